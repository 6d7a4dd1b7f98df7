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
/// U, V [batch, m, width] with m = min(Memory, MaxIter - 1), the slots a solve can fill (a slot is one
/// contiguous row per element), so memory is O(batch x width x m). Each batch element has its own factors and its own line search.
/// A step costs two low-rank products: J^-1 g_new and dx^T J^-1; J^-1 dg follows from the first
/// by linearity, and the next direction J_new^-1 g_new from the rank-one update itself. On the CPU, a solve with full
/// steps (no line search, no safeguard) keeps the steps alone (<see cref="BroydenSteps"/>): one tensor of slots, each read
/// once a step, until the ring would wrap, when they turn into U and V. Otherwise the step after f runs in C# and, until
/// the ring wraps, keeps V implicit (<see cref="BroydenCompactStep"/>): the factors are read twice a step.
/// </summary>
public static class Broyden
{
    /// <summary>A Broyden solver.</summary>
    public static Solver Create(SolverOptions? options = null, BroydenOptions? broyden = null)
    {
        var bo = (broyden ?? BroydenOptions.Default).Validate();
        var name = (bo.LineSearch ? "broyden(line-search)" : "broyden") + (bo.Safeguard > 0 ? $"(safeguard={bo.Safeguard})" : "");
        var solver = new SolverMethod<State>(name, (ctx, it) => Init(ctx, it, bo), (ctx, st, it) => st.Step(ctx, it, bo),
            st => st.Release()).ToSolver(options);
        return SolverDescriptions.Register(solver, $"{name}(m={bo.Memory}, {SolverDescriptions.Limits((options ?? SolverOptions.Default).Validate())})");
    }

    /// <summary>Forces a step's form on this thread (true: temporaries in buffers, products row by row into them; false:
    /// all fresh, products batched); null picks by <see cref="FreshIsNewPages"/> and <see cref="ProductsRowWise"/>. For
    /// tests, which hold the two equal to the bit.</summary>
    internal static bool? ForceRowWise { get => _forceRowWise; set => _forceRowWise = value; }
    [ThreadStatic] static bool? _forceRowWise;

    /// <summary>Forces the step's form after f on this thread (true: in C#, <see cref="BroydenHostStep"/>; false: libtorch's
    /// ops); null picks by <see cref="BroydenHostStep.Suit"/>. For tests and benchmarks.</summary>
    internal static bool? ForceHostStep { get => _forceHostStep; set => _forceHostStep = value; }
    [ThreadStatic] static bool? _forceHostStep;

    /// <summary>Forces the C# step's form on this thread (true: V implicit until the ring wraps; false: V explicit);
    /// null picks by <see cref="ImplicitPays"/>. For tests and benchmarks.</summary>
    internal static bool? ForceImplicitV { get => _forceImplicitV; set => _forceImplicitV = value; }
    [ThreadStatic] static bool? _forceImplicitV;

    /// <summary>
    /// Whether keeping V implicit pays at rows of <paramref name="width"/> with <paramref name="slots"/> slots: it saves
    /// a pass over V (slots x width, in SIMD vectors) and costs two triangular substitutions (slots^2 / 2 each, in
    /// scalars). On the toy (width 128, 29 slots) it lost, 0.86x f against 0.68x; at h 512 (30 720, 19) it won,
    /// 0.13-0.14 against 0.16-0.17.
    /// </summary>
    internal static bool ImplicitPays(long width, int slots) => ForceImplicitV ?? width >= 16L * slots;

    /// <summary>
    /// Whether a fresh [batch, width] tensor would be new pages the kernel faults in: CPU, at or above the mmap
    /// threshold that <see cref="Native.FreedMemory"/> set. A step then writes its temporaries into buffers it keeps;
    /// otherwise (the heap, an accelerator's caching allocator) fresh ones cost an op less each.
    /// </summary>
    internal static bool FreshIsNewPages(Tensor z, long batch, long width) =>
        ForceRowWise ?? (z.device_type == DeviceType.CPU && Native.FreedMemory.ThresholdBytes is int threshold
                         && batch * width * z.ElementSize >= threshold);

    /// <summary>Whether the products go row by row into buffers too: where fresh is new pages and a row is large enough
    /// (32 KiB) that a call per row costs less than faulting its pages in.</summary>
    internal static bool ProductsRowWise(Tensor z, long batch, long width) =>
        ForceRowWise ?? (FreshIsNewPages(z, batch, width) && width * z.ElementSize >= 32 * 1024);

    // The steps alone where they can carry the solve (BroydenSteps), else the factors U and V.
    static State Init(SolveContext ctx, Iterate first, BroydenOptions bo)
    {
        int slots = Slots(ctx, bo);
        return BroydenSteps.Suit(ctx, first.Z, bo, slots)
            ? new State { Steps = new BroydenSteps(ctx, first, slots) }
            : new State { Factors = new Factors(ctx, slots, first, bo.Safeguard > 0) };
    }

    // A solve's state: its steps until the ring would wrap, then (or from the start) the factors U and V.
    sealed class State
    {
        public BroydenSteps? Steps;
        public Factors? Factors;

        public Iterate Step(SolveContext ctx, Iterate it, BroydenOptions bo)
        {
            if (Steps is { } steps)
            {
                if (!steps.Full(ctx)) return steps.Step(ctx, it);
                var (u, v, jg) = steps.ToFactors();
                (Factors, Steps) = (new Factors(ctx, u, v, it, jg), null);
            }
            return Broyden.Step(ctx, Factors!, it, bo);
        }

        public void Release()
        {
            Steps?.Release();
            Factors?.Release();
        }
    }

    // Slots a solve can fill: one per step after the first, so no more than MaxIter - 1 (a ring of Memory would leave
    // the rest unwritten, yet its pages are faulted in: huge pages cover several slots).
    static int Slots(SolveContext ctx, BroydenOptions bo) => Math.Max(1, Math.Min(bo.Memory, ctx.Options.MaxIter - 1));

    // U, V: the rank-one corrections; G: g at the current iterate; JG: J^-1 g there, under the current factors.
    // The views a step uses (per slot, and the full ring's with their transposes) are made once.
    sealed class Factors
    {
        readonly SolveContext _ctx;
        Window? _full;
        // g, J^-1 g and a spare, [batch, width] each, whose roles rotate (Advance): a step writes g_new into the
        // spare, J^-1 g_new into the old g's buffer (spent once dg is formed) and u into the old J^-1 g's (spent once
        // u is formed). With Dx and Dg (where fresh is new pages and V is explicit) that is five buffers, with V
        // implicit three (dx goes into its slot, dg is never formed); f runs beside them. Where
        // fresh is cheap, g_new and J^-1 g_new are fresh tensors that take over their roles (Advance).
        Tensor _g, _jg, _spare;

        public Factors(SolveContext ctx, int memory, Iterate first, bool safeguard)
        {
            _ctx = ctx;
            var (b, n, z) = (ctx.Batch, ctx.Width, first.Z);
            // Uninitialised: a step reads only the slots earlier steps wrote (the window), and skipping the fill
            // saves a pass over 2 x memory copies of z per solve.
            U = ctx.Keep(torch.empty(b, memory, n, dtype: z.dtype, device: z.device));
            V = ctx.Keep(torch.empty(b, memory, n, dtype: z.dtype, device: z.device));
            (USlot, VSlot) = (SlotViews(ctx, U), SlotViews(ctx, V));
            (_g, _jg, _spare) = (Fresh(ctx, z).DetachFromDisposeScope(), Fresh(ctx, z).DetachFromDisposeScope(), Fresh(ctx, z).DetachFromDisposeScope());
            _g.copy_(first.Fz).sub_(first.Z);
            _jg.copy_(_g).neg_();
            if (safeguard)   // its lowest iterate and g: two copies of z that only the safeguard reads
            {
                BestX = ctx.Keep(first.Z.clone());
                BestG = ctx.Keep(G.clone());
                BestNorm = ctx.Keep(G.norm(1));
            }
            Host = ForceHostStep ?? BroydenHostStep.Suit(U);
            if (Host && ImplicitPays(n, memory)) W = BroydenCompactStep.NewW(U);
            else if (Host || FreshIsNewPages(z, b, n)) (Dx, Dg) = (ctx.Keep(Fresh(ctx, z)), ctx.Keep(Fresh(ctx, z)));
            if (!Host && ProductsRowWise(z, b, n)) Row = ctx.Keep(torch.empty(1, n, dtype: z.dtype, device: z.device));
        }

        // The factors of BroydenSteps.ToFactors, at the iterate `current` whose J^-1 g they hand on: V explicit, with the
        // explicit form's buffers (the same ones a solve in this form from the start holds once its ring wraps).
        public Factors(SolveContext ctx, Tensor u, Tensor v, Iterate current, Tensor jg)
        {
            _ctx = ctx;
            (U, V) = (ctx.Keep(u), v);
            (USlot, VSlot) = (SlotViews(ctx, U), SlotViews(ctx, V));
            (_g, _jg, _spare) = (Fresh(ctx, current.Z).DetachFromDisposeScope(), jg, Fresh(ctx, current.Z).DetachFromDisposeScope());
            _g.copy_(current.Fz).sub_(current.Z);
            Host = BroydenHostStep.Suit(U);
            (Dx, Dg) = (ctx.Keep(Fresh(ctx, current.Z)), ctx.Keep(Fresh(ctx, current.Z)));
            if (!Host && ProductsRowWise(current.Z, ctx.Batch, ctx.Width)) Row = ctx.Keep(torch.empty(1, ctx.Width, dtype: u.dtype, device: u.device));
        }

        // Set where the step after f runs in C# (CPU float32/float64), into the buffers.
        public bool Host { get; }

        // Where the step runs in C#: V's slots hold dx and W the dots that give V from them (BroydenCompactStep), until
        // Expand; null once V is explicit.
        public Array? W { get; private set; }

        // V explicit from here on (the ring is about to wrap, or libtorch's ops take a step), with the explicit form's
        // two buffers; `used` slots are filled.
        public void Expand(int used)
        {
            if (W is null) return;
            BroydenCompactStep.Expand(V, W, used);
            W = null;
            (Dx, Dg) = (_ctx.Keep(Fresh(_ctx, _g)), _ctx.Keep(Fresh(_ctx, _g)));
        }

        // Each slot of factors [batch, memory, width] as a [batch, width] view, kept for the solve.
        static Tensor[] SlotViews(SolveContext ctx, Tensor factors) =>
            Enumerable.Range(0, (int)factors.size(1)).Select(i => ctx.Keep(factors.select(1, i))).ToArray();

        static Tensor Fresh(SolveContext ctx, Tensor z) => torch.empty(ctx.Batch, ctx.Width, dtype: z.dtype, device: z.device);

        // A step's [batch, width] temporaries where a fresh one would be new pages (h 512: 3.7 of Broyden's 5.6 ms of
        // bookkeeping a step went to page faults); null where fresh is cheap.
        public Tensor? Dx { get; private set; }
        public Tensor? Dg { get; private set; }

        // a - b, into `buffer` where there is one (the same arithmetic, so the same bits).
        public static Tensor Difference(Tensor a, Tensor b, Tensor? buffer) => buffer is null ? a - b : buffer.copy_(a).sub_(b);

        // a * b into Dg (spent by then), or fresh.
        public Tensor Times(Tensor a, Tensor b) => Dg is null ? a * b : Dg.copy_(a).mul_(b);

        // Set where the products go row by row (ProductsRowWise): the one row they need of their own.
        public Tensor? Row { get; }

        public Tensor BestX { get; } = null!;
        public Tensor BestG { get; } = null!;
        public Tensor BestNorm { get; } = null!;

        public Tensor U { get; }
        public Tensor V { get; }
        public Tensor[] USlot { get; }
        public Tensor[] VSlot { get; }
        public Tensor G => _g;
        // g_new = f(x) - x: into the spare where fresh is new pages, else fresh (one op, not a copy and one).
        public Tensor NewG(Tensor fx, Tensor x) => Dx is null ? fx - x : _spare.copy_(fx).sub_(x);
        public Tensor JG => _jg;
        public Tensor Spare => _spare;

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

        // g_new becomes G, jg becomes JG, and the old JG's buffer (u, copied into its slot) the spare. Each is a buffer
        // when written in place (g_new the spare, jg the old G's) and a fresh tensor otherwise, which replaces it.
        public void Advance(Tensor g, Tensor jg)
        {
            var (oldG, oldJg) = (_g, _jg);
            if (!ReferenceEquals(jg, oldG))
            {
                oldG.Dispose();
                jg.DetachFromDisposeScope();
            }
            if (!ReferenceEquals(g, _spare))
            {
                _spare.Dispose();
                g.DetachFromDisposeScope();
            }
            (_g, _jg, _spare) = (g, jg, oldJg);
        }

        public void Release()
        {
            _g.Dispose();
            _jg.Dispose();
            _spare.Dispose();
        }

        // (-I + U^T V) x per element (first = V^T, second = U), or x^T (-I + U^T V) (first = U^T, second = V), for
        // factors [batch, used, width]. Both products are row vectors times matrices ([b, 1, n] x [b, n, m], then
        // [b, 1, m] x [b, m, n]): libtorch's CPU bmm runs that form ~20x faster than [b, m, n] x [b, n, 1].
        // With Row set, the second goes row by row into `into` (which may be x itself): the same gemm per row as
        // bmm's, so the same values. Otherwise a fresh tensor.
        public Tensor Product(Tensor x, Tensor first, Tensor second, Tensor into)
        {
            var s = torch.bmm(x.unsqueeze(1), first);
            if (Row is null) return torch.bmm(s, second).squeeze(1).sub_(x);
            bool inPlace = ReferenceEquals(into, x);
            for (long i = 0; i < _ctx.Batch; i++)
            {
                using var target = into.narrow(0, i, 1);
                using var si = s.select(0, i);
                using var wi = second.select(0, i);
                if (!inPlace) target.addmm_(si, wi, 0, 1);
                else target.neg_().add_(Row.addmm_(si, wi, 0, 1));   // -x + p is p - x exactly
            }
            return inPlace ? into : into.sub_(x);
        }
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
        int k = ctx.Step - 1, mem = st.USlot.Length;
        int used = Math.Min(k, mem), slot = k % mem;
        var z = it.Z;
        if (bo.Safeguard > 0) z = Safeguard(st, z, bo.Safeguard);
        // The step is -J^-1 g; without a line search x = z - J^-1 g, which is z + (-J^-1 g) exactly.
        Tensor x, fx;
        if (bo.LineSearch) (x, fx) = LineSearch(ctx, z, st.G, st.JG.neg(), bo.LineSearchTrials);
        else fx = ctx.Evaluate(x = NextPoint(ctx, st, z));
        // The first step's z is often a broadcast (InitialGuess.Zeros): a copy of it keeps the step in C#.
        if (st.Host && !BroydenHostStep.Readable(z) && BroydenHostStep.Readable(x, fx)) z = z.contiguous();
        if (st.Host && BroydenHostStep.Readable(z, x, fx))
        {
            // What follows, in C#: g_new into the spare, J_new^-1 g_new into the old g's buffer.
            var (gNew, jgNew) = (st.Spare, st.G);
            if (k >= mem) st.Expand(used);
            if (st.W is { } w0) BroydenCompactStep.Run(new(z, x, fx, st.G, st.JG, st.Spare, st.U, st.V, w0, used));
            else BroydenHostStep.Run(new(z, x, fx, st.G, st.JG, st.Spare, st.Dx!, st.Dg!, st.U, st.V, used, slot, k >= mem));
            st.Advance(gNew, jgNew);
            return new Iterate(x, fx) { Residual = gNew };
        }
        st.Expand(used);
        var w = st.At(used);
        var g = st.NewG(fx, x);
        var dx = Factors.Difference(x, z, st.Dx);
        var dg = Factors.Difference(g, st.G, st.Dg);
        var jg = st.Product(g, w.VT, w.U, into: st.G);                   // product 1: J^-1 g_new (the old g is spent)
        // Good Broyden: J^-1 += (dx - J^-1 dg) (dx^T J^-1) / (dx^T J^-1 dg), with J^-1 dg = J^-1 g_new - J^-1 g.
        // In place, each in the same arithmetic as its out-of-place form (a - b = -(b - a) exactly), so the iterates
        // are the same to the bit.
        var u = st.JG.sub_(jg).add_(dx);                                 // (the old J^-1 g is spent: its buffer)
        var vt = st.Product(dx, w.UT, w.V, into: dx);                    // product 2: dx^T J^-1 (dx is spent after it)
        // A denominator at or below 1e-30 in size (or NaN) drops the update: it becomes Inf, so u becomes 0
        // (or NaN, zeroed next).
        var denom = dg.mul_(vt).sum(1, keepdim: true);
        ZeroNonFinite(u.div_(SmallToInfinity(denom)));
        ZeroNonFinite(vt);
        // J_new^-1 g_new = J^-1 g_new - (the overwritten slot's term, once the ring is full) + the new term.
        if (k >= mem) jg.sub_(st.Times(st.USlot[slot], st.Times(st.VSlot[slot], g).sum(1, keepdim: true)));
        jg.add_(st.Times(u, st.Times(vt, g).sum(1, keepdim: true)));
        st.USlot[slot].copy_(u);
        st.VSlot[slot].copy_(vt);
        st.Advance(g, jg);
        return new Iterate(x, fx) { Residual = g };
    }

    // x = z - J^-1 g; where the step runs in C#, into the solve's recycled iterate memory (the same subtraction, so the
    // same bits; a fresh x was 0.15-0.3 ms of page faults a step at h 512).
    static Tensor NextPoint(SolveContext ctx, Factors st, Tensor z)
    {
        if (!st.Host || !BroydenHostStep.Readable(z)) return z - st.JG;
        var x = ctx.NewIterate();
        RowKernels.Difference(z, st.JG, x);
        return x;
    }

    // NaN and the infinities -> 0. On the CPU the entries are read in place and the op skipped when all are finite
    // (almost always; a no-op then, so the same bits); elsewhere a host read would be a sync.
    static void ZeroNonFinite(Tensor t)
    {
        if (SolveLedger.OnDevice(t) || HostReductions.AllFinite(t) != true) t.nan_to_num_(0, 0, 0);
    }

    // |denominator| <= 1e-30 (or NaN) -> Inf. On the CPU the [batch, 1] values are read in place and the three ops
    // skipped when none is (almost always; a no-op then, so the same bits); elsewhere a host read would be a sync.
    // (libtorch compares float32 with the bound rounded to float32, so the host does too.)
    static Tensor SmallToInfinity(Tensor denom)
    {
        const double tiny = 1e-30;
        double bound = denom.dtype switch { ScalarType.Float64 => tiny, ScalarType.Float32 => (float)tiny, _ => double.NaN };
        if (!double.IsNaN(bound) && !SolveLedger.OnDevice(denom) && Residuals.ToHost(denom).All(d => Math.Abs(d) > bound)) return denom;
        return denom.masked_fill_(denom.abs().le(tiny), double.PositiveInfinity);
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
}
