using Deq.Solvers;

namespace Deq.Implicit;

/// <summary>How an equilibrium is found and differentiated. Null members take the defaults below.</summary>
/// <param name="Forward">Solver for z* = f(z*). Default: Broyden, 30 steps, relative tolerance 1e-4.</param>
/// <param name="Backward">Solver for the adjoint g = J^T g + dL/dz*. Default: Broyden, 40 steps, relative tolerance 1e-5.</param>
/// <param name="Gradient">Gradient mode. Default: <see cref="GradientMode.Implicit"/>.</param>
public sealed record EquilibriumOptions(Solver? Forward = null, Solver? Backward = null, GradientMode? Gradient = null)
{
    /// <summary>The defaults.</summary>
    public static EquilibriumOptions Default { get; } = new();

    static readonly Solver DefaultForward = Broyden.Create(new SolverOptions(MaxIter: 30, Tol: 1e-4));
    static readonly Solver DefaultBackward = Broyden.Create(new SolverOptions(MaxIter: 40, Tol: 1e-5));

    /// <summary>The forward solver used: <see cref="Forward"/> or the default.</summary>
    public Solver ForwardSolver => Forward ?? DefaultForward;
    /// <summary>The adjoint solver used: <see cref="Backward"/> or the default.</summary>
    public Solver BackwardSolver => Backward ?? DefaultBackward;
    /// <summary>The gradient mode used: <see cref="Gradient"/> or implicit.</summary>
    public GradientMode Mode => Gradient ?? GradientMode.Implicit;
}
