using TorchSharp;
using static TorchSharp.torch;

namespace Deq.Solvers;

/// <summary>Broyden's own settings.</summary>
/// <param name="Memory">Rank of the inverse-Jacobian correction kept (oldest updates are overwritten).</param>
/// <param name="LineSearch">Backtrack the step (halving, up to <paramref name="LineSearchTrials"/> f evaluations) when it raises the residual.</param>
/// <param name="LineSearchTrials">Most step sizes tried per step when line search is on.</param>
/// <param name="Safeguard">
/// 0: off. Otherwise, per element: when ||f(z) - z|| exceeds this multiple of its lowest, the element returns to
/// its lowest iterate with its factors cleared (a plain forward step next). On Figure 2's map 10 helps and 2 cycles.
/// </param>
public sealed record BroydenOptions(int Memory = 30, bool LineSearch = false, int LineSearchTrials = 4, double Safeguard = 0)
{
    /// <summary>Memory 30, no line search, no safeguard.</summary>
    public static BroydenOptions Default { get; } = new();

    internal BroydenOptions Validate()
    {
        if (Memory < 1) throw new ArgumentOutOfRangeException(nameof(Memory), Memory, "BroydenOptions.Memory must be at least 1.");
        if (!(Safeguard == 0 || Safeguard > 1)) throw new ArgumentOutOfRangeException(nameof(Safeguard), Safeguard, "BroydenOptions.Safeguard must be 0 (off) or exceed 1.");
        if (LineSearchTrials < 1) throw new ArgumentOutOfRangeException(nameof(LineSearchTrials), LineSearchTrials, "BroydenOptions.LineSearchTrials must be at least 1.");
        return this;
    }
}

/// <summary>
/// Broyden's ("good") method on g(z) = f(z) - z, as the DEQ paper uses it: the inverse Jacobian
/// starts at B0 = -I and gains one rank-one correction per step, stored as low-rank factors
/// U, V [batch, Memory, width] (a slot is one contiguous row per element), so memory is
/// O(batch x width x Memory). Each batch element has its own factors and its own line search.
/// A step costs two low-rank products: J^-1 g_new and dx^T J^-1; J^-1 dg follows from the first
/// by linearity, and the next direction J_new^-1 g_new from the rank-one update itself.
/// </summary>
public static class Broyden
{
    /// <summary>A Broyden solver.</summary>
    public static Solver Create(SolverOptions? options = null, BroydenOptions? broyden = null)
    {
        var bo = (broyden ?? BroydenOptions.Default).Validate();
        var name = (bo.LineSearch ? "broyden(line-search)" : "broyden") + (bo.Safeguard > 0 ? $"(safeguard={bo.Safeguard})" : "");
        var solver = new SolverMethod<Factors>(name, (ctx, it) => new Factors(ctx, bo.Memory, it), (ctx, st, it) => Step(ctx, st, it, bo)).ToSolver(options);
        return SolverDescriptions.Register(solver, $"{name}(m={bo.Memory}, {SolverDescriptions.Limits((options ?? SolverOptions.Default).Validate())})");
    }

    // U, V: the rank-one corrections; G: g at the current iterate; JG: J^-1 g there, under the current factors.
    sealed class Factors
    {
        public Factors(SolveContext ctx, int memory, Iterate first)
        {
            var (b, n, z) = (ctx.Batch, ctx.Width, first.Z);
            U = ctx.Keep(torch.zeros(b, memory, n, dtype: z.dtype, device: z.device));
            V = ctx.Keep(torch.zeros(b, memory, n, dtype: z.dtype, device: z.device));
            G = ctx.Keep(first.Fz - first.Z);
            JG = ctx.Keep(G.neg());
            BestX = ctx.Keep(first.Z.clone());
            BestG = ctx.Keep(G.clone());
            BestNorm = ctx.Keep(G.norm(1));
        }

        public Tensor BestX { get; }
        public Tensor BestG { get; }
        public Tensor BestNorm { get; }

        public Tensor U { get; }
        public Tensor V { get; }
        public Tensor G { get; }
        public Tensor JG { get; }
    }

    static Iterate Step(SolveContext ctx, Factors st, Iterate it, BroydenOptions bo)
    {
        int k = ctx.Step - 1, mem = bo.Memory;
        int used = Math.Min(k, mem), slot = k % mem;
        var (u0, v0) = (st.U.narrow(1, 0, used), st.V.narrow(1, 0, used));
        var z = it.Z;
        if (bo.Safeguard > 0) z = Safeguard(st, z, bo.Safeguard);
        var update = st.JG.neg();                                        // -J^-1 g
        var (x, fx) = bo.LineSearch ? LineSearch(ctx, z, st.G, update, bo.LineSearchTrials) : Try(ctx, z, update, 1.0);
        var g = fx - x;
        var dx = x - z;
        var dg = g - st.G;
        var jg = MatVec(u0, v0, g);                                      // product 1: J^-1 g_new
        var vt = RMatVec(u0, v0, dx);                                    // product 2: dx^T J^-1
        // Good Broyden: J^-1 += (dx - J^-1 dg) (dx^T J^-1) / (dx^T J^-1 dg), with J^-1 dg = J^-1 g_new - J^-1 g.
        var u = dx - (jg - st.JG);
        var denom = (vt * dg).sum(1, keepdim: true);
        var safe = denom.abs() > 1e-30;
        u.div_(torch.where(safe, denom, torch.ones_like(denom))).masked_fill_(safe.logical_not(), 0).nan_to_num_(0, 0, 0);
        vt.nan_to_num_(0, 0, 0);
        // J_new^-1 g_new = J^-1 g_new - (the overwritten slot's term, once the ring is full) + the new term.
        if (k >= mem)
        {
            var (uOld, vOld) = (st.U.select(1, slot), st.V.select(1, slot));
            jg.sub_(uOld * (vOld * g).sum(1, keepdim: true));
        }
        jg.add_(u * (vt * g).sum(1, keepdim: true));
        st.U.select(1, slot).copy_(u);
        st.V.select(1, slot).copy_(vt);
        st.G.copy_(g);
        st.JG.copy_(jg);
        return new Iterate(x, fx);
    }

    // Per element: when ||g|| exceeds `factor` x its lowest, go back to the lowest iterate and forget the
    // element's factors (B = -I again), so its next step is a plain forward step from its best point.
    static Tensor Safeguard(Factors st, Tensor z, double factor)
    {
        var norm = st.G.norm(1);
        var better = norm.lt(st.BestNorm);
        var rows = better.unsqueeze(1);
        st.BestX.copy_(torch.where(rows, z, st.BestX));
        st.BestG.copy_(torch.where(rows, st.G, st.BestG));
        st.BestNorm.copy_(torch.where(better, norm, st.BestNorm));
        var back = norm.gt(st.BestNorm * factor).unsqueeze(1);
        st.U.masked_fill_(back.unsqueeze(2), 0);
        st.V.masked_fill_(back.unsqueeze(2), 0);
        st.G.copy_(torch.where(back, st.BestG, st.G));
        st.JG.copy_(torch.where(back, st.BestG.neg(), st.JG));
        return torch.where(back, st.BestX, z);
    }

    static (Tensor X, Tensor Fx) Try(SolveContext ctx, Tensor z, Tensor update, double size)
    {
        var x = size == 1.0 ? z + update : z + size * update;
        return (x, ctx.Evaluate(x));
    }

    // Per element: halve the step while ||g|| grows, up to `trials` f evaluations; keep each element's
    // first step that does not raise its residual, or else its lowest. (One host read per extra trial.)
    static (Tensor X, Tensor Fx) LineSearch(SolveContext ctx, Tensor z, Tensor g, Tensor update, int trials)
    {
        var before = g.norm(1);
        var (x, fx) = Try(ctx, z, update, 1.0);
        var lowest = (fx - x).norm(1);
        var accepted = lowest.le(before);
        double size = 1.0;
        for (int t = 1; t < trials && !accepted.all().item<bool>(); t++)
        {
            size /= 2;
            var (xt, fxt) = Try(ctx, z, update, size);
            var norm = (fxt - xt).norm(1);
            var better = norm.lt(lowest).logical_and_(accepted.logical_not());
            var rows = better.unsqueeze(1);
            (x, fx, lowest) = (torch.where(rows, xt, x), torch.where(rows, fxt, fx), torch.where(better, norm, lowest));
            accepted = accepted.logical_or(norm.le(before));
        }
        return (x, fx);
    }

    // (-I + U^T V) x per element, for factors [batch, used, width]: the inverse-Jacobian estimate times x.
    // Both products are row vectors times matrices ([b, 1, n] x [b, n, m], then [b, 1, m] x [b, m, n]):
    // libtorch's CPU bmm runs that form ~20x faster than the matrix-times-column [b, m, n] x [b, n, 1].
    static Tensor MatVec(Tensor us, Tensor vts, Tensor x)
    {
        var row = x.unsqueeze(1);
        return torch.bmm(torch.bmm(row, vts.transpose(1, 2)), us).squeeze(1).sub_(x);
    }

    // x^T (-I + U^T V), as a row per element.
    static Tensor RMatVec(Tensor us, Tensor vts, Tensor x)
    {
        var row = x.unsqueeze(1);
        return torch.bmm(torch.bmm(row, us.transpose(1, 2)), vts).squeeze(1).sub_(x);
    }
}
