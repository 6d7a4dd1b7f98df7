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
        var solver = new SolverMethod<Factors>(name, (ctx, it) => new Factors(ctx, bo.Memory, it, bo.Safeguard > 0), (ctx, st, it) => Step(ctx, st, it, bo),
            st => st.Release()).ToSolver(options);
        return SolverDescriptions.Register(solver, $"{name}(m={bo.Memory}, {SolverDescriptions.Limits((options ?? SolverOptions.Default).Validate())})");
    }

    // U, V: the rank-one corrections; G: g at the current iterate; JG: J^-1 g there, under the current factors.
    // The views a step uses (per slot, and the full ring's with their transposes) are made once.
    sealed class Factors
    {
        readonly SolveContext _ctx;
        Window? _full;

        public Factors(SolveContext ctx, int memory, Iterate first, bool safeguard)
        {
            _ctx = ctx;
            var (b, n, z) = (ctx.Batch, ctx.Width, first.Z);
            // Uninitialised: a step reads only the slots earlier steps wrote (the window), and skipping the fill
            // saves a pass over 2 x memory copies of z per solve.
            U = ctx.Keep(torch.empty(b, memory, n, dtype: z.dtype, device: z.device));
            V = ctx.Keep(torch.empty(b, memory, n, dtype: z.dtype, device: z.device));
            USlot = Enumerable.Range(0, memory).Select(i => ctx.Keep(U.select(1, i))).ToArray();
            VSlot = Enumerable.Range(0, memory).Select(i => ctx.Keep(V.select(1, i))).ToArray();
            _g = [Buffer(ctx, z), Buffer(ctx, z)];
            G.copy_(first.Fz).sub_(first.Z);
            JG = G.neg().DetachFromDisposeScope();
            if (safeguard)   // its lowest iterate and g: two copies of z that only the safeguard reads
            {
                BestX = ctx.Keep(first.Z.clone());
                BestG = ctx.Keep(G.clone());
                BestNorm = ctx.Keep(G.norm(1));
            }
            (Dx, Dg) = (Buffer(ctx, z), Buffer(ctx, z));
        }

        static Tensor Buffer(SolveContext ctx, Tensor z) => ctx.Keep(torch.empty(ctx.Batch, ctx.Width, dtype: z.dtype, device: z.device));

        // A step's [batch, width] temporaries, written in place: under Deq's freed-memory policy each fresh tensor of
        // this size is new pages the kernel faults in (h 512: 3.7 of Broyden's 5.6 ms of bookkeeping a step).
        public Tensor Dx { get; }
        public Tensor Dg { get; }

        public Tensor BestX { get; } = null!;
        public Tensor BestG { get; } = null!;
        public Tensor BestNorm { get; } = null!;

        public Tensor U { get; }
        public Tensor V { get; }
        public Tensor[] USlot { get; }
        public Tensor[] VSlot { get; }
        // g lives in one of two buffers: a step writes g_new into the other (it needs both for dg), then u into the old
        // g's (spent once dg is formed), and Advance swaps. So a step holds four [batch, width] buffers, as it did with
        // a fresh g and a separate work buffer, and f runs beside them without a fifth.
        readonly Tensor[] _g;
        int _current;
        public Tensor G => _g[_current];
        public Tensor NextG => _g[1 - _current];
        // Replaced, not copied into, each step (Advance); freed by Release.
        public Tensor JG { get; private set; }

        // While the ring fills, the step's own views; once it is full, one set kept for the rest of the solve.
        public Window At(int used)
        {
            if (used < USlot.Length) return Window.Of(U, V, used);
            if (_full is null)
            {
                var w = Window.Of(U, V, used);
                _full = new Window(_ctx.Keep(w.U), _ctx.Keep(w.V), _ctx.Keep(w.UT), _ctx.Keep(w.VT));
            }
            return _full;
        }

        public void Advance(Tensor jg)
        {
            _current = 1 - _current;
            JG.Dispose();
            JG = jg.DetachFromDisposeScope();
        }

        public void Release() => JG.Dispose();
    }

    // The first `used` slots of U and V, [b, used, n], and their transposes [b, n, used].
    sealed record Window(Tensor U, Tensor V, Tensor UT, Tensor VT)
    {
        public static Window Of(Tensor u, Tensor v, int used)
        {
            var (un, vn) = (u.narrow(1, 0, used), v.narrow(1, 0, used));
            return new Window(un, vn, un.transpose(1, 2), vn.transpose(1, 2));
        }
    }

    static Iterate Step(SolveContext ctx, Factors st, Iterate it, BroydenOptions bo)
    {
        int k = ctx.Step - 1, mem = bo.Memory;
        int used = Math.Min(k, mem), slot = k % mem;
        var w = st.At(used);
        var z = it.Z;
        if (bo.Safeguard > 0) z = Safeguard(st, z, bo.Safeguard);
        // The step is -J^-1 g; without a line search x = z - J^-1 g, which is z + (-J^-1 g) exactly.
        Tensor x, fx;
        if (bo.LineSearch) (x, fx) = LineSearch(ctx, z, st.G, st.JG.neg(), bo.LineSearchTrials);
        else fx = ctx.Evaluate(x = z - st.JG);
        var g = st.NextG.copy_(fx).sub_(x);                              // fx - x, in the spare buffer
        var dx = st.Dx.copy_(x).sub_(z);
        var dg = st.Dg.copy_(g).sub_(st.G);
        var jg = Product(g, w.VT, w.U);                                  // product 1: J^-1 g_new
        var vt = Product(dx, w.UT, w.V);                                 // product 2: dx^T J^-1
        // Good Broyden: J^-1 += (dx - J^-1 dg) (dx^T J^-1) / (dx^T J^-1 dg), with J^-1 dg = J^-1 g_new - J^-1 g.
        // A denominator at or below 1e-30 in size (or NaN) drops the update: it becomes Inf, so u becomes 0
        // (or NaN, zeroed next). In place, each in the same arithmetic as its out-of-place form (a - b = -b + a
        // exactly), so the iterates are the same to the bit.
        var u = st.G.copy_(jg).sub_(st.JG).neg_().add_(dx);              // (the old g is spent: its buffer)
        var denom = dg.mul_(vt).sum(1, keepdim: true);
        u.div_(denom.masked_fill_(denom.abs().le(1e-30), double.PositiveInfinity)).nan_to_num_(0, 0, 0);
        vt.nan_to_num_(0, 0, 0);
        // J_new^-1 g_new = J^-1 g_new - (the overwritten slot's term, once the ring is full) + the new term.
        // dx and dg are spent: their buffers hold the products below.
        if (k >= mem) jg.sub_(dx.copy_(st.USlot[slot]).mul_(dg.copy_(st.VSlot[slot]).mul_(g).sum(1, keepdim: true)));
        jg.add_(dx.copy_(u).mul_(dg.copy_(vt).mul_(g).sum(1, keepdim: true)));
        st.USlot[slot].copy_(u);
        st.VSlot[slot].copy_(vt);
        st.Advance(jg);
        return new Iterate(x, fx) { Residual = g };
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

    // (-I + U^T V) x per element (first = V^T, second = U), or x^T (-I + U^T V) (first = U^T, second = V), for
    // factors [batch, used, width]. Both products are row vectors times matrices ([b, 1, n] x [b, n, m], then
    // [b, 1, m] x [b, m, n]): libtorch's CPU bmm runs that form ~20x faster than [b, m, n] x [b, n, 1].
    static Tensor Product(Tensor x, Tensor first, Tensor second) =>
        torch.bmm(torch.bmm(x.unsqueeze(1), first), second).squeeze(1).sub_(x);
}
