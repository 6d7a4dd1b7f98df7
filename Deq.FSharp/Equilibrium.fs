namespace Deq.FSharp

open System
open TorchSharp
open Deq.Solvers
open Deq.Implicit

/// How an equilibrium is found and differentiated (Deq.Implicit.EquilibriumOptions as an F# record).
type EquilibriumSettings =
    { /// The forward solver.
      Forward: Solver
      /// The gradient: Adjoint.Implicit(...), Adjoint.JacobianFree, Adjoint.Phantom(k), Adjoint.Unrolled(L) or your own.
      Adjoint: Adjoint
      /// Called after every backward pass with the adjoint solve's statistics (match it with AdjointSolved/AdjointFaulted).
      OnBackward: BackwardReport -> unit }

    /// The C# options.
    member s.ToOptions() = EquilibriumOptions(s.Forward, s.Adjoint, Action<_> s.OnBackward)

/// The implicit layer from F#: `Equilibrium.solve settings f z0`, then `Equilibrium.backward loss`.
[<RequireQualifiedAccess>]
module Equilibrium =
    /// The memory-lean defaults, reporting nothing: forward, plain iteration or else Anderson (m = 2) from its best
    /// iterate (EquilibriumOptions.LeanForward: 30 steps each, relative tolerance 1e-4); gradient, the implicit adjoint
    /// solved by fixed-point iteration or else damped iteration (EquilibriumOptions.LeanAdjointSolve: 40 steps each, 1e-5).
    let defaults =
        let d = EquilibriumOptions.Default
        { Forward = d.ForwardSolver; Adjoint = d.AdjointUsed; OnBackward = ignore }

    /// z* = f(z*) from z0 without a graph, with one application of f at z* on the tape whose gradient
    /// is the adjoint's.
    let solve (settings: EquilibriumSettings) (f: torch.Tensor -> torch.Tensor) (z0: torch.Tensor) : EquilibriumResult =
        Equilibrium.Solve(Func<_, _> f, z0, settings.ToOptions())

    /// loss.backward(), raising ImplicitBackwardException (naming the failure) if an adjoint solve faulted.
    let backward (loss: torch.Tensor) : unit = Equilibrium.Backward loss

/// f's own vector-Jacobian product for the implicit adjoint (Deq.Implicit.VectorJacobian) from F#.
[<RequireQualifiedAccess>]
module VectorJacobian =
    /// Whether the implicit adjoint is building its graph of f at z* and takes an offer.
    let wanted () : bool = VectorJacobian.Wanted

    /// Inside f: offers `product saved g` = (df/dz)^T g for `output`, f's result, reading `saved` (tensors f's graph saves
    /// anyway; the adjoint keeps them until its backward is done). `product` runs with gradients off.
    let offer (output: torch.Tensor) (saved: torch.Tensor list) (product: torch.Tensor list -> torch.Tensor -> torch.Tensor) : unit =
        VectorJacobian.Offer(output, Array.ofList saved, Func<_, _>(fun held -> Func<_, _>(product (List.ofSeq held))))

/// The Jacobian of f at z from F#.
[<RequireQualifiedAccess>]
module Jacobian =
    /// Hutchinson estimate of ||df/dz||_F^2 (differentiable: a Jacobian regulariser).
    let frobeniusNormSquared (f: torch.Tensor -> torch.Tensor) (z: torch.Tensor) : torch.Tensor =
        JacobianEstimates.FrobeniusNormSquared(Func<_, _> f, z)

    /// Spectral radius of df/dz per batch element (power iteration).
    let spectralRadius (f: torch.Tensor -> torch.Tensor) (z: torch.Tensor) : float[] =
        JacobianEstimates.SpectralRadius(Func<_, _> f, z)

    /// frobeniusNormSquared averaged over `samples` probes, drawn from `generator` (None: the global one).
    let frobeniusNormSquaredWith (samples: int) (generator: torch.Generator option) (f: torch.Tensor -> torch.Tensor) (z: torch.Tensor) : torch.Tensor =
        JacobianEstimates.FrobeniusNormSquared(Func<_, _> f, z, samples, Option.toObj generator)

    /// spectralRadius after `iterations` power steps from a start drawn from `generator` (None: the global one).
    let spectralRadiusWith (iterations: int) (generator: torch.Generator option) (f: torch.Tensor -> torch.Tensor) (z: torch.Tensor) : float[] =
        JacobianEstimates.SpectralRadius(Func<_, _> f, z, iterations, Option.toObj generator)

/// Adjoints and backward reports matched as F# patterns.
[<AutoOpen>]
module ImplicitPatterns =
    /// Implicit (its linear solve) | JacobianFree | Phantom (k, damping) | Unrolled L | Custom (your own Adjoint).
    let (|Implicit|JacobianFree|Phantom|Unrolled|Custom|) (adjoint: Adjoint) =
        match adjoint with
        | :? ImplicitAdjoint as a -> Implicit a.LinearSolve
        | :? JacobianFreeAdjoint -> JacobianFree
        | :? PhantomAdjoint as p -> Phantom(p.Steps, p.Damping)
        | :? UnrolledAdjoint as u -> Unrolled u.Steps
        | other -> Custom other

    /// AdjointSolved (the adjoint solve's result) | AdjointFaulted (the exception raised inside backward).
    let (|AdjointSolved|AdjointFaulted|) (report: BackwardReport) =
        match report.Error with
        | null -> AdjointSolved report.Result
        | error -> AdjointFaulted error
