using Deq.Solvers;
using TorchSharp;
using static TorchSharp.torch;

namespace Deq.Implicit;

/// <summary>See <see cref="Adjoint.JacobianFree"/>.</summary>
public sealed record JacobianFreeAdjoint : Adjoint
{
    internal JacobianFreeAdjoint() { }

    /// <inheritdoc />
    public override EquilibriumResult Solve(Func<Tensor, Tensor> f, Tensor z0, Solver forward, Action<BackwardReport>? onBackward)
    {
        var result = forward(f, z0);
        return torch.is_grad_enabled() ? new EquilibriumResult(Equilibrium.Apply(f, result.Value), result, this) : new EquilibriumResult(result.Value, result, this);
    }

    /// <inheritdoc />
    public override string Describe() => "jacobian-free";
}

/// <summary>See <see cref="Adjoint.Phantom"/>.</summary>
public sealed record PhantomAdjoint : Adjoint
{
    internal PhantomAdjoint(int steps, double damping)
    {
        if (steps < 1) throw new ArgumentOutOfRangeException(nameof(steps), steps, "Phantom gradient steps must be at least 1.");
        if (!(damping > 0 && damping <= 1)) throw new ArgumentOutOfRangeException(nameof(damping), damping, "Phantom gradient damping must lie in (0, 1].");
        (Steps, Damping) = (steps, damping);
    }

    /// <summary>Unrolled damped steps from z*.</summary>
    public int Steps { get; }

    /// <summary>Damping of each step.</summary>
    public double Damping { get; }

    /// <inheritdoc />
    public override EquilibriumResult Solve(Func<Tensor, Tensor> f, Tensor z0, Solver forward, Action<BackwardReport>? onBackward)
    {
        var result = forward(f, z0);
        if (!torch.is_grad_enabled()) return new EquilibriumResult(result.Value, result, this);
        return new EquilibriumResult(Unroll(f, result.Value, Steps, Damping), result, this);
    }

    /// <summary><paramref name="steps"/> damped steps z &lt;- (1 - damping) z + damping f(z) from z, on the tape.</summary>
    internal static Tensor Unroll(Func<Tensor, Tensor> f, Tensor z, int steps, double damping)
    {
        for (int k = 0; k < steps; k++) z = z.lerp(Equilibrium.Apply(f, z), damping);
        return z;
    }

    /// <inheritdoc />
    public override string Describe() => $"phantom(k={Steps}, damping={Damping})";
}

/// <summary>See <see cref="Adjoint.Unrolled"/>. Its "forward" statistics are those of the last application.</summary>
public sealed record UnrolledAdjoint : Adjoint
{
    internal UnrolledAdjoint(int steps)
    {
        if (steps < 1) throw new ArgumentOutOfRangeException(nameof(steps), steps, "Unrolled steps must be at least 1.");
        Steps = steps;
    }

    /// <summary>Applications of f, each kept on the autograd tape.</summary>
    public int Steps { get; }

    /// <inheritdoc />
    public override EquilibriumResult Solve(Func<Tensor, Tensor> f, Tensor z0, Solver forward, Action<BackwardReport>? onBackward)
    {
        var z = z0;
        Tensor previous = z0;
        for (int k = 0; k < Steps; k++)
        {
            previous = z;
            z = Equilibrium.Apply(f, z);
        }
        return new EquilibriumResult(z, Stats(previous, z), this);
    }

    /// <inheritdoc />
    public override string Describe() => $"unrolled({Steps})";

    // The stack's "residual" is that of its second-to-last state: ||f(z_{L-1}) - z_{L-1}||.
    SolverResult Stats(Tensor previous, Tensor last)
    {
        using var scope = torch.NewDisposeScope();
        using var _ = torch.no_grad();
        long b = last.shape[0];
        var (absHost, relHost) = Residuals.PerElement(previous, last);
        var value = last.detach().MoveToOuterDisposeScope();
        return new SolverResult(value, SolverStatus.MaxIterations, $"unrolled {Steps} applications of f", Steps, Steps,
            absHost, relHost, [absHost.Max()], [relHost.Max()], new bool[b], $"unrolled({Steps})");
    }
}
