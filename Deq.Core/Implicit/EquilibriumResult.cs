using Deq.Solvers;
using static TorchSharp.torch;

namespace Deq.Implicit;

/// <summary>
/// What <see cref="Equilibrium.Solve"/> returns: z*, attached to autograd when gradients are on,
/// with the forward solve's statistics now and the backward solve's once backward has run.
/// </summary>
public sealed class EquilibriumResult
{
    internal EquilibriumResult(Tensor? z, SolverResult forward, GradientMode mode)
    {
        Z = z!;
        Forward = forward;
        Mode = mode;
    }

    /// <summary>The equilibrium, shaped like z0. Differentiable with respect to f's parameters and inputs.</summary>
    public Tensor Z { get; internal set; }

    /// <summary>Forward solver statistics (for <see cref="GradientMode.Unrolled"/>: the last step's residual).</summary>
    public SolverResult Forward { get; }

    /// <summary>The adjoint solve's statistics; null until backward has run, and always for modes without one.</summary>
    public SolverResult? Backward { get; internal set; }

    /// <summary>
    /// The exception the adjoint solve threw, if any. Exceptions cannot cross libtorch's autograd
    /// engine, so backward records it here (gradient through this equilibrium: zero) instead.
    /// </summary>
    public Exception? BackwardError { get; internal set; }

    /// <summary>Rethrows <see cref="BackwardError"/>, wrapped, if backward recorded one.</summary>
    public void ThrowIfBackwardFaulted()
    {
        if (BackwardError is not null)
            throw new InvalidOperationException($"The adjoint solve failed during backward: {BackwardError.Message}", BackwardError);
    }

    /// <summary>The gradient mode used.</summary>
    public GradientMode Mode { get; }
}
