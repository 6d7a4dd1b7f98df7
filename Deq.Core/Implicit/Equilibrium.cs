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
