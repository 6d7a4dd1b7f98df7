using Deq.Solvers;
using TorchSharp;
using static TorchSharp.torch;

namespace Deq.Implicit;

/// <summary>The equilibrium function: z* = f(z*), differentiable by the chosen gradient mode.</summary>
public static class Equilibrium
{
    /// <summary>
    /// Finds z* = f(z*) from <paramref name="z0"/> and returns it attached to autograd.
    /// <paramref name="f"/> closes over its input x and parameters (z => f(z; x)); gradients reach
    /// them through one application of f at z*, whose incoming gradient the implicit mode replaces
    /// by the adjoint solution. No graph is kept across solver iterations.
    /// With gradients off (evaluation) it only solves.
    /// </summary>
    public static EquilibriumResult Solve(Func<Tensor, Tensor> f, Tensor z0, EquilibriumOptions? options = null)
    {
        var o = options ?? EquilibriumOptions.Default;
        if (o.Mode is UnrolledGradient unrolled) return Unroll(f, z0, unrolled);

        var forward = o.ForwardSolver(f, z0);
        var zStar = forward.Value;
        if (!torch.is_grad_enabled()) return new EquilibriumResult(zStar, forward, o.Mode);

        switch (o.Mode)
        {
            case ImplicitGradient:
            {
                var result = new EquilibriumResult(null, forward, o.Mode);
                result.Z = AdjointHook.Attach(Apply(f, zStar), new AdjointProblem(f, zStar, o.BackwardSolver, result));
                return result;
            }
            case JacobianFreeGradient:
                return new EquilibriumResult(Apply(f, zStar), forward, o.Mode);
            case PhantomGradient phantom:
            {
                var z = zStar;
                for (int k = 0; k < phantom.Steps; k++) z = z.lerp(Apply(f, z), phantom.Damping);
                return new EquilibriumResult(z, forward, o.Mode);
            }
            default:
                throw new NotSupportedException($"Gradient mode {o.Mode} is not supported.");
        }
    }

    static EquilibriumResult Unroll(Func<Tensor, Tensor> f, Tensor z0, UnrolledGradient mode)
    {
        var z = z0;
        Tensor previous = z0;
        for (int k = 0; k < mode.Steps; k++)
        {
            previous = z;
            z = Apply(f, z);
        }
        var stats = UnrolledStats(previous, z, mode.Steps);
        return new EquilibriumResult(z, stats, mode);
    }

    // f(z) with f's intermediate tensors released as soon as it returns: autograd keeps what backward
    // needs on its own, so L unrolled applications hold only their saved activations (as in PyTorch),
    // not every temporary handle until the caller's scope ends (2-3x more memory per application).
    internal static Tensor Apply(Func<Tensor, Tensor> f, Tensor z)
    {
        using var scope = torch.NewDisposeScope();
        var fz = f(z);
        // Only a tensor f created here moves out; one it returned from elsewhere (z itself, a constant) stays put.
        return scope.Contains(fz) ? scope.MoveToOuter(fz) : fz;
    }

    // The unrolled stack's "residual" is that of its second-to-last state: ||f(z_{L-1}) - z_{L-1}||.
    static SolverResult UnrolledStats(Tensor previous, Tensor last, int steps)
    {
        using var scope = torch.NewDisposeScope();
        using var _ = torch.no_grad();
        long b = last.shape[0];
        var (absHost, relHost) = Residuals.PerElement(previous, last);
        var value = last.detach().MoveToOuterDisposeScope();
        return new SolverResult(value, SolverStatus.MaxIterations, $"unrolled {steps} applications of f", steps, steps,
            absHost, relHost, [absHost.Max()], [relHost.Max()], new bool[b], $"unrolled({steps})");
    }
}
