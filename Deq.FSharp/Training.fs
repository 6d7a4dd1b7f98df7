namespace Deq.FSharp

open System
open System.Collections.Generic
open System.IO
open System.Threading
open TorchSharp
open Deq.Training

/// A training step's result from F#: the loss, the items it averages over, solver figures as a function.
[<RequireQualifiedAccess>]
module StepOutput =
    /// The loss of a step over `tokens` items (tokens or samples), without solver figures.
    let create (tokens: int64) (loss: torch.Tensor) : StepOutput = StepOutput(loss, tokens)

    /// The same output with solver figures, read by the trainer after backward (so backward figures are in).
    let withStats (stats: unit -> SolverStats) (output: StepOutput) : StepOutput =
        StepOutput(output.Loss, output.Tokens, Func<_> stats)

/// A training task from F#: `TrainingTask.create model step |> TrainingTask.withEvaluate eval |> ...`.
/// Each `with...` returns a new task (the C# record, which F# cannot copy-and-update).
[<RequireQualifiedAccess>]
module TrainingTask =
    let private rebuild (task: TrainingTask) step evaluate state fingerprint =
        TrainingTask(task.Module, step, evaluate, state, fingerprint)

    /// A task that optimises `model`'s parameters with the loss `step` returns (no evaluation, no state).
    let create (model: torch.nn.Module) (step: StepContext -> StepOutput) : TrainingTask =
        TrainingTask(model, Func<_, _> step)

    /// The task with validation totals; the trainer runs `evaluate` in eval mode under no_grad.
    let withEvaluate (evaluate: unit -> EvalOutput) (task: TrainingTask) : TrainingTask =
        rebuild task task.Step (Func<_> evaluate) task.State task.Fingerprint

    /// The task with these configuration fields (replacing any it had), which a checkpoint must match to resume.
    let withFingerprint (fields: (string * string) list) (task: TrainingTask) : TrainingTask =
        rebuild task task.Step task.Evaluate task.State (readOnlyDict fields)

    /// The task with carried state to checkpoint: `save` returns it as named tensors, `load` restores them.
    let withState (save: unit -> IReadOnlyDictionary<string, torch.Tensor>) (load: IReadOnlyDictionary<string, torch.Tensor> -> unit) (task: TrainingTask) : TrainingTask =
        rebuild task task.Step task.Evaluate (TaskState(Func<_> save, Action<_> load)) task.Fingerprint

    /// The task's step as an F# function.
    let step (task: TrainingTask) : StepContext -> StepOutput =
        let s = task.Step
        s.Invoke

    /// The task with its step wrapped: `wrap (the old step) context` (to watch, count or alter steps).
    let mapStep (wrap: (StepContext -> StepOutput) -> StepContext -> StepOutput) (task: TrainingTask) : TrainingTask =
        rebuild task (Func<_, _>(wrap (step task))) task.Evaluate task.State task.Fingerprint

    /// The validation totals function, if the task has one.
    let evaluator (task: TrainingTask) : (unit -> EvalOutput) option =
        task.Evaluate |> Option.ofObj |> Option.map (fun e -> e.Invoke)

/// How a run ended, from F#.
[<RequireQualifiedAccess>]
module TrainResult =
    /// The last evaluation, if there was one.
    let valid (result: TrainResult) : EvalOutput option = Option.ofObj result.Valid

    /// The loss of the last training step taken in this call, if any.
    let lastLoss (result: TrainResult) : float option = Option.ofNullable result.LastLoss

/// A log record's optional fields as options.
[<RequireQualifiedAccess>]
module LogRecord =
    /// Solver steps and residuals, when the model reports them.
    let solver (record: LogRecord) : SolverStats option = Option.ofObj record.Solver

    /// The learning rate (training records).
    let learningRate (record: LogRecord) : float option = Option.ofNullable record.LearningRate

    /// The gradient norm before clipping (training records).
    let gradNorm (record: LogRecord) : float option = Option.ofNullable record.GradNorm

/// How the console sink writes (Deq.Training.LogSinks.Console's arguments as a record).
type ConsoleSink =
    { /// Destination (None: Console.Out).
      Writer: TextWriter option
      /// Training steps between lines when not a terminal.
      Every: int
      /// Force the progress bar on or off (None: whether stdout is a terminal).
      Interactive: bool option }

/// Log sinks as F# functions `LogRecord -> unit`, what `Trainer.run` takes.
[<RequireQualifiedAccess>]
module LogSinks =
    /// Does nothing.
    let none : LogRecord -> unit = ignore

    /// All of the sinks, in order.
    let combine (sinks: (LogRecord -> unit) list) : LogRecord -> unit = fun r -> for sink in sinks do sink r

    /// One JSON object per line (absent fields omitted), flushed per record.
    let jsonLines (writer: TextWriter) : LogRecord -> unit =
        let sink = LogSinks.JsonLines writer
        sink.Invoke

    /// The console sink's defaults: Console.Out, a line every 50 steps when redirected, a bar on a terminal.
    let consoleDefaults = { Writer = None; Every = 50; Interactive = None }

    /// Console output as configured: a redrawn progress bar on a terminal, plain lines every `Every` steps otherwise.
    let consoleWith (settings: ConsoleSink) : LogRecord -> unit =
        let sink = LogSinks.Console(Option.toObj settings.Writer, settings.Every, Option.toNullable settings.Interactive)
        sink.Invoke

    /// Console output with the defaults.
    let console : LogRecord -> unit = consoleWith consoleDefaults

    /// Forwards to an observer, e.g. a notebook's live progress display.
    let observer (observer: IObserver<LogRecord>) : LogRecord -> unit = observer.OnNext

    /// A human-readable line for a record.
    let format (record: LogRecord) : string = LogSinks.Format record

    /// A record as one line of JSON.
    let toJson (record: LogRecord) : string = LogSinks.ToJson record

/// The trainer from F#: `task |> Trainer.run options onRecord`.
[<RequireQualifiedAccess>]
module Trainer =
    /// Trains the task for options.Steps steps (or the rest of them when resuming), passing every log record to onRecord.
    let run (options: TrainOptions) (onRecord: LogRecord -> unit) (task: TrainingTask) : TrainResult =
        Trainer.Run(task, options, Action<_> onRecord)

    /// Trains without logging.
    let runQuiet (options: TrainOptions) (task: TrainingTask) : TrainResult = Trainer.Run(task, options)

    /// Trains until done or cancelled (then writes a checkpoint when a path is set); the result says which.
    let runCancellable (options: TrainOptions) (onRecord: LogRecord -> unit) (cancel: CancellationToken) (task: TrainingTask) : TrainResult =
        Trainer.Run(task, options, Action<_> onRecord, cancel)

    /// The task's validation totals now, in eval mode under no_grad (the task must have an evaluator).
    let evaluate (task: TrainingTask) : EvalOutput = Trainer.Evaluate task

/// How MemoryLedger.measure runs its step.
type LedgerSettings =
    { /// How z* is found and differentiated (Equilibrium.defaults; an Unrolled adjoint measures the unrolled stack).
      Equilibrium: EquilibriumSettings
      /// The parameters, for the static rows (None: those rows are 0).
      Module: torch.nn.Module option
      /// Optimizer tensors per parameter (Adam 2, SGD with momentum 1, plain SGD 0).
      OptimizerSlots: int }

/// One training step's memory, phase by phase, from F#.
[<RequireQualifiedAccess>]
module MemoryLedger =
    /// The lean equilibrium defaults, no module, Adam's two slots.
    let defaults = { Equilibrium = Equilibrium.defaults; Module = None; OptimizerSlots = 2 }

    /// Runs one real training step, the solve of z = f(z) from z0 then backward of loss z*, and measures each phase
    /// (CPU resident memory on Linux; see Deq.Training.MemoryLedger.Measure).
    let measure (settings: LedgerSettings) (f: torch.Tensor -> torch.Tensor) (z0: torch.Tensor) (loss: torch.Tensor -> torch.Tensor) : MemoryLedger =
        MemoryLedger.Measure(Func<_, _> f, z0, settings.Equilibrium.ToOptions(), Func<_, _> loss,
                             Option.toObj settings.Module, settings.OptimizerSlots)
