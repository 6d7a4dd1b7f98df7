namespace Deq.FSharp

open System
open TorchSharp
open Deq.Implicit

/// Settings of the reversible solve (Deq.Implicit.ReversibleOptions as an F# record).
type ReversibleSettings =
    { /// Relaxation in (0, 2), not 1.
      Beta: float
      /// Step cap (two f evaluations a step).
      MaxIterations: int
      /// Stop when every element's relative residual is at most this.
      Tolerance: float }

    /// The C# options.
    member s.ToOptions() = ReversibleOptions(s.Beta, s.MaxIterations, s.Tolerance)

/// The reversible DEQ solver (McCallum, Arora and Foster, 2025) from F#: exact gradients by inverting the coupled
/// relaxation in backward, at memory constant in the number of steps.
[<RequireQualifiedAccess>]
module Reversible =
    /// beta 0.8, 30 steps, relative tolerance 1e-4.
    let defaults =
        let d = ReversibleOptions()
        { Beta = d.Beta; MaxIterations = d.MaxIterations; Tolerance = d.Tolerance }

    /// z* of f z x from z0, differentiable with respect to x and the given parameters.
    /// parameters: any tensors, e.g. `module.parameters()` as it is.
    let solve (settings: ReversibleSettings) (f: torch.Tensor -> torch.Tensor -> torch.Tensor) (x: torch.Tensor)
              (parameters: seq<#torch.Tensor>) (z0: torch.Tensor) : ReversibleResult =
        Reversible.Solve(Func<_, _, _> f, x, z0, Seq.cast<torch.Tensor> parameters, settings.ToOptions())

    /// The coupled relaxation as a forward-only solver, composable with the other solvers.
    let solver (options: Deq.Solvers.SolverOptions) (beta: float) : Deq.Solvers.Solver = Reversible.Create(options, beta)

/// Fixed-point correction from F#: states along the solve, each with a phantom gradient.
[<RequireQualifiedAccess>]
module Trajectory =
    /// The iterates at the given solver steps (those reached) and the final one, each through phantomSteps damped
    /// steps of f on the tape.
    let sample (forward: Deq.Solvers.Solver) (atSteps: int list) (phantomSteps: int) (damping: float)
               (f: torch.Tensor -> torch.Tensor) (z0: torch.Tensor) : TrajectoryResult =
        Trajectory.Sample(Func<_, _> f, z0, forward, Array.ofList atSteps, phantomSteps, damping)
