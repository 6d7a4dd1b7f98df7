using TorchSharp;
using static TorchSharp.torch;

namespace Deq.Solvers;

/// <summary>Anderson acceleration's own settings.</summary>
/// <param name="Memory">How many past iterates the least-squares mixing uses (m).</param>
/// <param name="Lambda">Ridge regularisation of the mixing system.</param>
/// <param name="Beta">Mixing: 1 takes the mixed f values, smaller values lean on the mixed iterates.</param>
public sealed record AndersonOptions(int Memory = 5, double Lambda = 1e-4, double Beta = 1.0)
{
    /// <summary>m = 5, lambda = 1e-4, beta = 1.</summary>
    public static AndersonOptions Default { get; } = new();

    internal AndersonOptions Validate()
    {
        if (Memory < 1) throw new ArgumentOutOfRangeException(nameof(Memory), Memory, "AndersonOptions.Memory must be at least 1.");
        if (!(Lambda >= 0)) throw new ArgumentOutOfRangeException(nameof(Lambda), Lambda, "AndersonOptions.Lambda must be non-negative.");
        if (!(Beta > 0 && Beta <= 1)) throw new ArgumentOutOfRangeException(nameof(Beta), Beta, "AndersonOptions.Beta must lie in (0, 1].");
        return this;
    }
}

/// <summary>
/// Anderson acceleration (Walker and Ni 2011), batched: each batch element mixes its own last m
/// iterates by the weights that minimise the combined residual, subject to summing to one.
/// </summary>
public static class Anderson
{
    /// <summary>An Anderson solver.</summary>
    public static Solver Create(SolverOptions? options = null, AndersonOptions? anderson = null)
    {
        var o = (options ?? SolverOptions.Default).Validate();
        var a = (anderson ?? AndersonOptions.Default).Validate();
        Solver solver = (f, z0) => SolveSession.Run("anderson", f, z0, o, (s, start) =>
        {
            long b = s.Batch, n = start.numel() / b;
            int m = a.Memory;
            // History of iterates and their residuals g = f(z) - z, [batch, m, n], overwritten as a ring.
            // Keeping g (not f) lets the mixing run as batched products with no [batch, m, n] temporary.
            using var xs = SolveSession.Keep(torch.zeros(b, m, n, dtype: start.dtype, device: start.device));
            using var gs = SolveSession.Keep(torch.zeros(b, m, n, dtype: start.dtype, device: start.device));
            var shape = start.shape;
            var z = start;
            try
            {
                for (int k = 0; ; k++)
                {
                    using var step = torch.NewDisposeScope();
                    var fz = s.Evaluate(z);
                    if (!s.Record(z, fz)) break;
                    xs.select(1, k % m).copy_(z.reshape(b, n));
                    gs.select(1, k % m).copy_(fz.reshape(b, n)).sub_(z.reshape(b, n));
                    int used = Math.Min(k + 1, m);
                    var next = used == 1 ? fz : Mix(xs, gs, used, a)?.reshape(shape);
                    if (next is null)
                    {
                        s.Stop(SolverStatus.Diverged, $"Anderson's mixing system became singular at step {s.Steps}; raise AndersonOptions.Lambda");
                        break;
                    }
                    z = SolveSession.Advance(z, next, start);
                }
            }
            finally
            {
                SolveSession.Release(z, start);
            }
        });
        return SolverDescriptions.Register(solver, $"anderson(m={a.Memory}, {SolverDescriptions.Limits(o)})");
    }

    // Solve [0 1^T; 1 GG^T + lambda I] [c; alpha] = [1; 0] per batch element, then mix
    // sum_i alpha_i (x_i + beta g_i): beta times the mixed f values plus (1 - beta) times the mixed iterates.
    static Tensor? Mix(Tensor xs, Tensor gs, int used, AndersonOptions a)
    {
        long b = xs.shape[0];
        var x = xs.narrow(1, 0, used);
        var g = gs.narrow(1, 0, used);
        var h = torch.zeros(b, used + 1, used + 1, dtype: xs.dtype, device: xs.device);
        h.select(1, 0).narrow(1, 1, used).fill_(1);
        h.select(2, 0).narrow(1, 1, used).fill_(1);
        var gram = torch.bmm(g, g.transpose(1, 2));
        // Scale the ridge by the residual size so lambda is unit-free.
        var scale = gram.diagonal(dim1: 1, dim2: 2).mean([1]).clamp_min(1e-30).reshape(b, 1, 1);
        var eye = torch.eye(used, dtype: xs.dtype, device: xs.device).unsqueeze(0);
        h.narrow(1, 1, used).narrow(2, 1, used).copy_(gram + a.Lambda * scale * eye);
        var rhs = torch.zeros(b, used + 1, 1, dtype: xs.dtype, device: xs.device);
        rhs.select(1, 0).fill_(1);
        Tensor alpha;
        try
        {
            alpha = torch.linalg.solve(h, rhs).narrow(1, 1, used).transpose(1, 2);   // [b, 1, used]
        }
        catch (System.Runtime.InteropServices.ExternalException)
        {
            return null;
        }
        return torch.bmm(alpha, x).add_(torch.bmm(alpha, g), alpha: a.Beta).squeeze(1);
    }
}
