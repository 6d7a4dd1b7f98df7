using static TorchSharp.torch;

namespace Deq.Solvers;

/// <summary>Plain (Picard) iteration z &lt;- (1 - damping) z + damping f(z).</summary>
public static class ForwardIteration
{
    /// <summary>A forward-iteration solver. <paramref name="damping"/> in (0, 1]; 1 is undamped.</summary>
    public static Solver Create(SolverOptions? options = null, double damping = 1.0)
    {
        if (!(damping > 0 && damping <= 1))
            throw new ArgumentOutOfRangeException(nameof(damping), damping, "ForwardIteration damping must lie in (0, 1].");
        var name = damping == 1.0 ? "forward" : "forward-damped";
        var solver = SolverMethod.Create(name, (ctx, it) =>
        {
            var z = damping == 1.0 ? it.Fz : it.Z.lerp(it.Fz, damping);
            return new Iterate(z, ctx.Evaluate(z, done: it));
        }, options);
        var limits = SolverDescriptions.Limits((options ?? SolverOptions.Default).Validate());
        var settings = damping == 1.0 ? limits : $"damping={damping.ToString(System.Globalization.CultureInfo.InvariantCulture)}, {limits}";
        return SolverDescriptions.Register(solver, $"forward({settings})");
    }
}
