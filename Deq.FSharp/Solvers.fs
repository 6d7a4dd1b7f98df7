namespace Deq.FSharp

open System
open TorchSharp
open Deq.Solvers

/// What every solver shares (Deq.Solvers.SolverOptions as an F# record, so `{ s with Tol = 1e-8 }` works).
type SolverSettings =
    { /// Iteration limit.
      MaxIter: int
      /// Stopping tolerance.
      Tol: float
      /// Whether Tol bounds the absolute or the relative residual.
      Stop: StopMode
      /// The residual's norm.
      Norm: ResidualNorm
      /// Residual growth over the best one that counts as divergence.
      DivergenceFactor: float }

    /// The C# options (validated when a solver is built).
    member s.ToOptions() = SolverOptions(s.MaxIter, s.Tol, s.Stop, s.Norm, s.DivergenceFactor)

/// Anderson acceleration's own settings.
type AndersonSettings =
    { /// Past iterates mixed.
      Memory: int
      /// Ridge regularisation of the mixing least squares.
      Lambda: float
      /// Mixing (damping) parameter.
      Beta: float }

/// Broyden's method's own settings.
type BroydenSettings =
    { /// Low-rank inverse-Jacobian updates kept.
      Memory: int
      /// Backtracking line search on the residual.
      LineSearch: bool
      /// Line-search trials per step.
      LineSearchTrials: int }

/// Solvers as F# values: build with forwardIteration/anderson/broyden, compose with |>
/// (orElse, damped, observed, withBudget), apply with run (or turn into a plain function with toFunction).
/// A solver stays a Deq.Solvers.Solver, so it goes wherever the C# API takes one.
[<RequireQualifiedAccess>]
module Solver =
    /// The shared defaults (50 iterations, relative tolerance 1e-6, L2 norm).
    let defaults =
        let d = SolverOptions.Default
        { MaxIter = d.MaxIter; Tol = d.Tol; Stop = d.Stop; Norm = d.Norm; DivergenceFactor = d.DivergenceFactor }

    /// Anderson's defaults (memory 5).
    let andersonDefaults =
        let d = AndersonOptions.Default
        { AndersonSettings.Memory = d.Memory; Lambda = d.Lambda; Beta = d.Beta }

    /// Broyden's defaults (memory 30, no line search).
    let broydenDefaults =
        let d = BroydenOptions.Default
        { BroydenSettings.Memory = d.Memory; LineSearch = d.LineSearch; LineSearchTrials = d.LineSearchTrials }

    /// z <- (1 - damping) z + damping f(z).
    let forwardIteration (damping: float) (settings: SolverSettings) : Solver =
        ForwardIteration.Create(settings.ToOptions(), damping)

    /// Anderson acceleration with its own settings.
    let andersonWith (anderson: AndersonSettings) (settings: SolverSettings) : Solver =
        Anderson.Create(settings.ToOptions(), AndersonOptions(anderson.Memory, anderson.Lambda, anderson.Beta))

    /// Anderson acceleration (memory 5).
    let anderson (settings: SolverSettings) : Solver = andersonWith andersonDefaults settings

    /// Broyden's method with its own settings.
    let broydenWith (broyden: BroydenSettings) (settings: SolverSettings) : Solver =
        Broyden.Create(settings.ToOptions(), BroydenOptions(broyden.Memory, broyden.LineSearch, broyden.LineSearchTrials))

    /// Broyden's method (memory 30).
    let broyden (settings: SolverSettings) : Solver = broydenWith broydenDefaults settings

    /// Solves z = f(z) from z0: the solver applied as a function.
    let run (solver: Solver) (f: torch.Tensor -> torch.Tensor) (z0: torch.Tensor) : SolverResult =
        solver.Invoke(Func<_, _> f, z0)

    /// The solver as a plain F# function.
    let toFunction (solver: Solver) : (torch.Tensor -> torch.Tensor) -> torch.Tensor -> SolverResult = run solver

    /// A solver from an F# function (described as `description`).
    let ofFunction (description: string) (solve: (torch.Tensor -> torch.Tensor) -> torch.Tensor -> SolverResult) : Solver =
        Solver(fun f z0 -> solve f.Invoke z0).Named description

    /// `first |> Solver.orElse fallback`: fallback continues from first's best iterate unless first converged.
    let orElse (fallback: Solver) (first: Solver) : Solver = first.OrElse fallback

    /// Damps every f call: f'(z) = (1 - beta) z + beta f(z).
    let damped (beta: float) (solver: Solver) : Solver = solver.Damped beta

    /// Calls onStep after every evaluation of f (residuals per batch element).
    let observed (onStep: SolverStep -> unit) (solver: Solver) : Solver = solver.Observed(Action<_> onStep)

    /// Caps the evaluations of f.
    let withBudget (maxEvaluations: int) (solver: Solver) : Solver = solver.WithBudget maxEvaluations

    /// A readable description, e.g. "anderson(m=5, 30 iters, rel 1e-4)".
    let describe (solver: Solver) : string = solver.Describe()

/// Solver results matched by status.
[<AutoOpen>]
module SolverPatterns =
    /// Converged (steps taken) | MaxIterations | Diverged | NonFinite | Faulted | BudgetExhausted (each with its reason).
    let (|Converged|MaxIterations|Diverged|NonFinite|Faulted|BudgetExhausted|) (r: SolverResult) =
        match r.Status with
        | SolverStatus.Converged -> Converged r.Steps
        | SolverStatus.MaxIterations -> MaxIterations r.Reason
        | SolverStatus.Diverged -> Diverged r.Reason
        | SolverStatus.NonFinite -> NonFinite r.Reason
        | SolverStatus.BudgetExhausted -> BudgetExhausted r.Reason
        | _ -> Faulted r.Reason
