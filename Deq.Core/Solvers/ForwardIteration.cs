using TorchSharp;
using static TorchSharp.torch;

namespace Deq.Solvers;

/// <summary>Plain (Picard) iteration z &lt;- (1 - damping) z + damping f(z).</summary>
public static class ForwardIteration
{
    /// <summary>A forward-iteration solver. <paramref name="damping"/> in (0, 1]; 1 is undamped.</summary>
    public static Solver Create(SolverOptions? options = null, double damping = 1.0)
    {
        var o = (options ?? SolverOptions.Default).Validate();
        if (!(damping > 0 && damping <= 1))
            throw new ArgumentOutOfRangeException(nameof(damping), damping, "ForwardIteration damping must lie in (0, 1].");
        var name = damping == 1.0 ? "forward" : $"forward(damping={damping})";
        Solver solver = (f, z0) => SolveSession.Run(name, f, z0, o, (s, start) =>
        {
            var z = start;
            try
            {
                while (true)
                {
                    using var step = torch.NewDisposeScope();
                    var fz = s.Evaluate(z);
                    if (!s.Record(z, fz)) break;
                    z = SolveSession.Advance(z, damping == 1.0 ? fz : z.lerp(fz, damping), start);
                }
            }
            finally
            {
                SolveSession.Release(z, start);
            }
        });
        return SolverDescriptions.Register(solver, $"{name}({SolverDescriptions.Limits(o)})");
    }
}
