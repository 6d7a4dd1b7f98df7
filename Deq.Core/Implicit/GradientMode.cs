namespace Deq.Implicit;

/// <summary>
/// How gradients flow through an equilibrium. A value, chosen per call (or per training step),
/// so user models never branch on it.
/// </summary>
public abstract record GradientMode
{
    private protected GradientMode() { }

    /// <summary>The exact implicit-function-theorem gradient: the adjoint g = J^T g + dL/dz* is solved by the backward solver.</summary>
    public static GradientMode Implicit { get; } = new ImplicitGradient();

    /// <summary>The Jacobian-free (1-step) gradient: backpropagate through one application of f at z*, i.e. take g = dL/dz*.</summary>
    public static GradientMode JacobianFree { get; } = new JacobianFreeGradient();

    /// <summary>Phantom gradient: backpropagate through <paramref name="steps"/> damped steps z &lt;- (1 - damping) z + damping f(z) from z*.</summary>
    public static GradientMode Phantom(int steps, double damping = 0.5) => new PhantomGradient(steps, damping);

    /// <summary>
    /// No solver: apply f <paramref name="steps"/> times from z0 and backpropagate through all of them.
    /// This is the weight-tied baseline, and the paper's pretraining mode.
    /// </summary>
    public static GradientMode Unrolled(int steps) => new UnrolledGradient(steps);
}

/// <summary>See <see cref="GradientMode.Implicit"/>.</summary>
public sealed record ImplicitGradient : GradientMode
{
    internal ImplicitGradient() { }
}

/// <summary>See <see cref="GradientMode.JacobianFree"/>.</summary>
public sealed record JacobianFreeGradient : GradientMode
{
    internal JacobianFreeGradient() { }
}

/// <summary>See <see cref="GradientMode.Phantom"/>.</summary>
public sealed record PhantomGradient : GradientMode
{
    internal PhantomGradient(int steps, double damping)
    {
        if (steps < 1) throw new ArgumentOutOfRangeException(nameof(steps), steps, "Phantom gradient steps must be at least 1.");
        if (!(damping > 0 && damping <= 1)) throw new ArgumentOutOfRangeException(nameof(damping), damping, "Phantom gradient damping must lie in (0, 1].");
        (Steps, Damping) = (steps, damping);
    }

    /// <summary>Unrolled damped steps from z*.</summary>
    public int Steps { get; }

    /// <summary>Damping of each step.</summary>
    public double Damping { get; }
}

/// <summary>See <see cref="GradientMode.Unrolled"/>.</summary>
public sealed record UnrolledGradient : GradientMode
{
    internal UnrolledGradient(int steps)
    {
        if (steps < 1) throw new ArgumentOutOfRangeException(nameof(steps), steps, "Unrolled steps must be at least 1.");
        Steps = steps;
    }

    /// <summary>Applications of f, each kept on the autograd tape.</summary>
    public int Steps { get; }
}
