namespace Deq.FSharp

open TorchSharp
open Deq.Models
open Deq.Training

/// The DEQ-Transformer from F#: the memory is an option (None at the start of a stream), settings are a record.
[<RequireQualifiedAccess>]
module DeqTransformerLM =
    /// Binds f to tokens [B, T] and the previous memory.
    let bind (model: DeqTransformerLM) (tokens: torch.Tensor) (memory: TransformerMemory option) : TransformerCell =
        model.Bind(tokens, Option.toObj memory)

    /// One segment solved (or unrolled) with the given settings.
    let forward (model: DeqTransformerLM) (tokens: torch.Tensor) (memory: TransformerMemory option) (settings: EquilibriumSettings) =
        model.Forward(tokens, Option.toObj memory, settings.ToOptions())

    /// One segment with the model's schedule at a training step.
    let forwardAt (model: DeqTransformerLM) (tokens: torch.Tensor) (memory: TransformerMemory option) (step: int) =
        model.Forward(tokens, Option.toObj memory, step)

/// The DEQ-TrellisNet from F#: the carried state is an option, settings are a record.
[<RequireQualifiedAccess>]
module DeqTrellisNetLM =
    /// Binds f to tokens [B, T] and the carried state.
    let bind (model: DeqTrellisNetLM) (tokens: torch.Tensor) (memory: TrellisMemory option) : TrellisNetCell =
        model.Bind(tokens, Option.toObj memory)

    /// One segment solved (or unrolled) with the given settings.
    let forward (model: DeqTrellisNetLM) (tokens: torch.Tensor) (memory: TrellisMemory option) (settings: EquilibriumSettings) =
        model.Forward(tokens, Option.toObj memory, settings.ToOptions())

    /// One segment with the model's schedule at a training step.
    let forwardAt (model: DeqTrellisNetLM) (tokens: torch.Tensor) (memory: TrellisMemory option) (step: int) =
        model.Forward(tokens, Option.toObj memory, step)

/// A bound DEQ-Transformer cell.
[<RequireQualifiedAccess>]
module TransformerCell =
    /// Its map z -> f(z; x) as an F# function (what Solver.run and Equilibrium.solve take).
    let f (cell: TransformerCell) : torch.Tensor -> torch.Tensor =
        let f = cell.F
        f.Invoke

    /// Frees the injections once z* is solved and the next memory taken (f and NextMemory refuse to run afterwards).
    let release (cell: TransformerCell) : unit = cell.Release()

/// A bound DEQ-TrellisNet cell.
[<RequireQualifiedAccess>]
module TrellisNetCell =
    /// Its map z -> f(z; x) as an F# function.
    let f (cell: TrellisNetCell) : torch.Tensor -> torch.Tensor =
        let f = cell.F
        f.Invoke

    /// Frees the injection once z* is solved (f refuses to run afterwards).
    let release (cell: TrellisNetCell) : unit = cell.Release()

/// A registry language model as training sees it, from F#.
[<RequireQualifiedAccess>]
module LanguageModel =
    /// A language model for the trainer: its module, a forward over one segment (input [L, batch], the previous
    /// memory or None, the training step or None in evaluation) and its configuration fields for the fingerprint.
    let create (model: torch.nn.Module) (forward: torch.Tensor -> torch.Tensor option -> StepContext option -> LanguageModelOutput) (config: (string * string) list) : LanguageModel =
        LanguageModel(model, (fun input memory context -> forward input (Option.ofObj memory) (Option.ofObj context)), readOnlyDict config)

    /// A forward's output: logits [L, batch, vocab] and the memory to carry into the next segment (None: none).
    let output (logits: torch.Tensor) (memory: torch.Tensor option) : LanguageModelOutput = LanguageModelOutput(logits, Option.toObj memory)

    /// One segment [L, batch] from the previous memory (None at the start of a pass), at a training step
    /// (None in evaluation).
    let forward (model: LanguageModel) (input: torch.Tensor) (memory: torch.Tensor option) (context: StepContext option) : LanguageModelOutput =
        model.Forward.Invoke(input, Option.toObj memory, Option.toObj context)

    /// The [L, batch, vocab] logits, if the model forms them (with an adaptive softmax it scores the targets alone: see `loss`).
    let logits (output: LanguageModelOutput) : torch.Tensor option = Option.ofObj output.Logits

    /// The mean negative log-likelihood of targets [L, batch], from the logits or the model's own scoring of the targets.
    let loss (output: LanguageModelOutput) (target: torch.Tensor) : torch.Tensor = output.Loss(target)

    /// The memory to carry into the next segment, if the model has one.
    let memory (output: LanguageModelOutput) : torch.Tensor option = Option.ofObj output.Memory

    /// The solver figures (read after backward), if the model has solvers.
    let stats (output: LanguageModelOutput) : SolverStats option = output.Stats |> Option.ofObj |> Option.map (fun s -> s.Invoke())
