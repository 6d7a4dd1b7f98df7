using TorchSharp;
using static TorchSharp.torch;

namespace Deq.Implicit;

/// <summary>The equilibrium function: z* = f(z*), differentiable by the chosen <see cref="Adjoint"/>.</summary>
public static class Equilibrium
{
    /// <summary>
    /// Finds z* = f(z*) from <paramref name="z0"/> and returns it attached to autograd.
    /// <paramref name="f"/> closes over its input x and parameters (z => f(z; x)); how gradients reach them
    /// is the options' <see cref="EquilibriumOptions.Adjoint"/>. No graph is kept across solver iterations.
    /// With gradients off (evaluation) it only solves.
    /// </summary>
    public static EquilibriumResult Solve(Func<Tensor, Tensor> f, Tensor z0, EquilibriumOptions? options = null)
    {
        var o = options ?? EquilibriumOptions.Default;
        return o.AdjointUsed.Solve(f, z0, o.ForwardSolver, o.OnBackward);
    }

    /// <summary>
    /// Runs <c>loss.backward()</c> and raises an <see cref="ImplicitBackwardException"/> if an adjoint solve
    /// faulted during it. (An exception cannot cross libtorch's autograd engine, so the adjoint records it,
    /// returns a zero gradient for that equilibrium, and this rethrows it: a gradient is never silently zero.)
    /// </summary>
    public static void Backward(Tensor loss)
    {
        // A second backward through the same graph would reach an adjoint node whose saved tensors are gone, and
        // TorchSharp 0.107 lets that error end the process (see BackpropagatedLosses); refuse it here instead.
        if (!BackpropagatedLosses.MarkFirst(loss))
            throw new InvalidOperationException("Equilibrium.Backward: this loss was already backpropagated, and that freed its graph (the equilibrium's graph of f at z* with it); compute the loss again (a new forward pass) before another backward.");
        using var watch = BackwardFaults.Watch();
        loss.backward();
        if (BackwardFaults.Take() is { } e)
            throw new ImplicitBackwardException($"the adjoint solve failed during backward ({e.GetType().Name}: {e.Message}); the gradient through that equilibrium would be zero", e);
    }

    /// <summary>
    /// f(z) with f's intermediate tensors released as soon as it returns: autograd keeps what backward needs
    /// on its own, so L unrolled applications hold only their saved activations (as in PyTorch), not every
    /// temporary handle until the caller's scope ends. For writing adjoints.
    /// </summary>
    public static Tensor Apply(Func<Tensor, Tensor> f, Tensor z)
    {
        using var scope = torch.NewDisposeScope();
        var fz = f(z);
        // Only a tensor f created here moves out; one it returned from elsewhere (z itself, a constant) stays put.
        return scope.Contains(fz) ? scope.MoveToOuter(fz) : fz;
    }
}

/// <summary>
/// The losses <see cref="Equilibrium.Backward"/> has run (weakly held: a loss's entry goes with it). A second
/// backward through a freed graph is an error in PyTorch; in TorchSharp 0.107 it ends the process when the first
/// node to unpack its saved tensors is a custom one, such as the adjoint's (loss = z*.sum() is enough), because
/// that unpack's C++ exception is not caught before it crosses the managed callback.
/// </summary>
internal static class BackpropagatedLosses
{
    static readonly System.Runtime.CompilerServices.ConditionalWeakTable<Tensor, object> Seen = new();

    /// <summary>True the first time for a given loss tensor, false after.</summary>
    public static bool MarkFirst(Tensor loss) => Seen.TryAdd(loss, Seen);
}
