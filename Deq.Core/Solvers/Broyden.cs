using TorchSharp;
using static TorchSharp.torch;

namespace Deq.Solvers;

/// <summary>Broyden's own settings.</summary>
/// <param name="Memory">Rank of the inverse-Jacobian correction kept (oldest updates are overwritten).</param>
/// <param name="LineSearch">Backtrack the step (halving, up to <paramref name="LineSearchTrials"/> f evaluations) when it raises the residual.</param>
/// <param name="LineSearchTrials">Most step sizes tried per step when line search is on.</param>
public sealed record BroydenOptions(int Memory = 30, bool LineSearch = false, int LineSearchTrials = 4)
{
    /// <summary>Memory 30, no line search.</summary>
    public static BroydenOptions Default { get; } = new();

    internal BroydenOptions Validate()
    {
        if (Memory < 1) throw new ArgumentOutOfRangeException(nameof(Memory), Memory, "BroydenOptions.Memory must be at least 1.");
        if (LineSearchTrials < 1) throw new ArgumentOutOfRangeException(nameof(LineSearchTrials), LineSearchTrials, "BroydenOptions.LineSearchTrials must be at least 1.");
        return this;
    }
}

/// <summary>
/// Broyden's ("good") method on g(z) = f(z) - z, as the DEQ paper uses it: the inverse Jacobian
/// starts at B0 = -I and gains one rank-one correction per step, stored as low-rank factors
/// (U, V^T) so that memory is O(batch x n x Memory). Each batch element has its own factors.
/// </summary>
public static class Broyden
{
    /// <summary>A Broyden solver.</summary>
    public static Solver Create(SolverOptions? options = null, BroydenOptions? broyden = null)
    {
        var o = (options ?? SolverOptions.Default).Validate();
        var bo = (broyden ?? BroydenOptions.Default).Validate();
        var name = bo.LineSearch ? "broyden(line-search)" : "broyden";
        Solver solver = (f, z0) => SolveSession.Run(name, f, z0, o, (s, start) =>
        {
            long b = s.Batch, n = start.numel() / b;
            int mem = bo.Memory;
            var shape = start.shape;
            using var us = SolveSession.Keep(torch.zeros(b, n, mem, dtype: start.dtype, device: start.device));
            using var vts = SolveSession.Keep(torch.zeros(b, mem, n, dtype: start.dtype, device: start.device));
            var x0 = start.reshape(b, n);
            Tensor x = x0, gx;
            using (var first = torch.NewDisposeScope())
            {
                var fx = s.Evaluate(start);
                if (!s.Record(start, fx)) return;
                gx = SolveSession.Keep((fx - start).reshape(b, n));
            }
            try
            {
                for (int k = 0; ; k++)
                {
                    using var step = torch.NewDisposeScope();
                    // Only the slots written so far: the rest are zeros and would only cost time.
                    int used = Math.Min(k, mem);
                    var (u0, v0) = (us.narrow(2, 0, used), vts.narrow(1, 0, used));
                    var update = MatVec(u0, v0, gx).neg_();     // -J^{-1} g
                    var (xNew, fxNew, gxNew) = Step(s, x, gx, update, shape, bo);
                    bool go = s.Record(xNew.reshape(shape), fxNew.reshape(shape));
                    var dx = xNew - x;
                    var dg = gxNew - gx;
                    x = SolveSession.Advance(x, xNew, x0);
                    gx = SolveSession.Advance(gx, gxNew, start);
                    if (!go) break;
                    // Good Broyden: J^{-1} += (dx - J^{-1} dg) (dx^T J^{-1}) / (dx^T J^{-1} dg)
                    // In place where the values are the same, so a step holds a few states, not a dozen.
                    var vt = RMatVec(u0, v0, dx);
                    var denom = (vt * dg).sum(1, keepdim: true);
                    var safe = denom.abs() > 1e-30;
                    var u = MatVec(u0, v0, dg).neg_().add_(dx)                  // dx - J^{-1} dg
                        .div_(torch.where(safe, denom, torch.ones_like(denom)))
                        .masked_fill_(safe.logical_not(), 0);
                    int slot = k % mem;
                    vts.select(1, slot).copy_(vt.nan_to_num_(0, 0, 0));
                    us.select(2, slot).copy_(u.nan_to_num_(0, 0, 0));
                }
            }
            finally
            {
                SolveSession.Release(x, x0);
                gx.Dispose();
            }
        });
        return SolverDescriptions.Register(solver, $"{name}(m={bo.Memory}, {SolverDescriptions.Limits(o)})");
    }

    // Tries z + step * update, halving the step while the residual grows (line search on).
    static (Tensor x, Tensor fx, Tensor gx) Step(SolveSession s, Tensor x, Tensor gx, Tensor update, long[] shape, BroydenOptions bo)
    {
        double size = 1.0;
        double before = bo.LineSearch ? gx.norm().item<double>() : 0;
        (Tensor x, Tensor fx, Tensor gx)? best = null;
        double bestNorm = double.PositiveInfinity;
        for (int trial = 0; trial < (bo.LineSearch ? bo.LineSearchTrials : 1); trial++, size /= 2)
        {
            var xt = size == 1.0 ? x + update : x + size * update;
            var fxt = s.Evaluate(xt.reshape(shape)).reshape(xt.shape);
            var gxt = fxt - xt;
            if (!bo.LineSearch) return (xt, fxt, gxt);
            var norm = gxt.norm().item<double>();
            if (best is null || norm < bestNorm) (best, bestNorm) = ((xt, fxt, gxt), norm);
            if (norm <= before) break;
        }
        return best!.Value;
    }

    // (-I + U V^T) x : the current inverse-Jacobian estimate times x.
    static Tensor MatVec(Tensor us, Tensor vts, Tensor x) =>
        torch.bmm(us, torch.bmm(vts, x.unsqueeze(2))).squeeze(2).sub_(x);

    // x^T (-I + U V^T), returned as a row per batch element.
    static Tensor RMatVec(Tensor us, Tensor vts, Tensor x) =>
        torch.bmm(torch.bmm(x.unsqueeze(1), us), vts).squeeze(1).sub_(x);
}
