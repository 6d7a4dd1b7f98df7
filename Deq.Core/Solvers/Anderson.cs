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
        var a = (anderson ?? AndersonOptions.Default).Validate();
        // Each step finds the current iterate's p and g in its slot, mixes, evaluates f at the next iterate and
        // writes the next one's p and g into the following slot (the oldest, which the mix has just used), so that
        // g = f(z) - z is formed once and also serves the driver's residual.
        var solver = new SolverMethod<History>("anderson", (ctx, it) =>
        {
            var h = new History(ctx, a.Memory, it.Z);
            h.Write(0, it, a.Beta);
            return h;
        }, (ctx, h, it) =>
        {
            int k = ctx.Step - 1, m = a.Memory, slot = k % m;
            var v = h.At(Math.Min(k + 1, m));
            // One new row (and column) of the Gram matrix G G^T per step, not the whole of it.
            var row = torch.bmm(h.GSlot[slot].unsqueeze(1), v.GsT).squeeze(1);                       // [b, used]
            v.GramRow[slot].copy_(row);
            v.GramCol[slot].copy_(row);
            // A singular mixing system (only with Lambda = 0 and a repeated history) takes a plain step instead.
            var z = v.Used == 1 ? it.Fz : AndersonMixing.Mix(h, v, a, slot) ?? it.Fz;
            var next = new Iterate(z, ctx.Evaluate(z, done: it));
            return next with { Residual = h.Write((k + 1) % m, next, a.Beta) };
        }).ToSolver(options);
        return SolverDescriptions.Register(solver, $"anderson(m={a.Memory}, {SolverDescriptions.Limits((options ?? SolverOptions.Default).Validate())})");
    }

    // Past points p = (1 - beta) z + beta f(z) and residuals g = f(z) - z, [batch, m, width], overwritten as a
    // ring (the next iterate is sum_i alpha_i p_i, one batched product, no [batch, m, width] temporary); the
    // residuals' Gram matrix [batch, m, m]; and the bordered mixing system [batch, m + 1, m + 1], its border fixed.
    // The views a step uses are made once (per slot, and for the full ring), not once a step.
    internal sealed class History
    {
        readonly SolveContext _ctx;
        Window? _full;

        public History(SolveContext ctx, int m, Tensor z)
        {
            _ctx = ctx;
            Tensor Zeros(params long[] shape) => ctx.Keep(torch.zeros(shape, dtype: z.dtype, device: z.device));
            Ps = Zeros(ctx.Batch, m, ctx.Width);
            Gs = Zeros(ctx.Batch, m, ctx.Width);
            Gram = Zeros(ctx.Batch, m, m);
            System = Zeros(ctx.Batch, m + 1, m + 1);
            System.select(1, 0).narrow(1, 1, m).fill_(1);
            System.select(2, 0).narrow(1, 1, m).fill_(1);
            Rhs = Zeros(ctx.Batch, m + 1, 1);
            Rhs.select(1, 0).fill_(1);
            Alpha = Zeros(ctx.Batch, 1, m);
            PSlot = Enumerable.Range(0, m).Select(i => ctx.Keep(Ps.select(1, i))).ToArray();
            GSlot = Enumerable.Range(0, m).Select(i => ctx.Keep(Gs.select(1, i))).ToArray();
        }

        public Tensor Ps { get; }
        public Tensor Gs { get; }
        public Tensor Gram { get; }
        public Tensor System { get; }
        public Tensor Rhs { get; }
        public Tensor Alpha { get; }       // the mixing weights, [batch, 1, m], written by the host on the CPU
        public int Memory => PSlot.Length;
        public Tensor[] PSlot { get; }
        public Tensor[] GSlot { get; }

        /// <summary>Writes p and g of <paramref name="it"/> into <paramref name="slot"/>; returns g there.</summary>
        public Tensor Write(int slot, Iterate it, double beta)
        {
            if (beta == 1.0) PSlot[slot].copy_(it.Fz);
            else PSlot[slot].copy_(it.Z).lerp_(it.Fz, beta);
            return GSlot[slot].copy_(it.Fz).sub_(it.Z);
        }

        // While the ring fills, the step's own views; once it is full, one set kept for the rest of the solve.
        public Window At(int used) => used < Memory ? new Window(this, used, null) : _full ??= new Window(this, used, _ctx);
    }

    // The first `used` entries of the history, as views.
    internal sealed class Window
    {
        public Window(History h, int used, SolveContext? keep)
        {
            Used = used;
            Tensor K(Tensor t) => keep is null ? t : keep.Keep(t);
            Ps = K(h.Ps.narrow(1, 0, used));
            Gs = K(h.Gs.narrow(1, 0, used));
            GsT = K(Gs.transpose(1, 2));
            Gram = K(h.Gram.narrow(1, 0, used).narrow(2, 0, used));
            GramDiagonal = K(Gram.diagonal(dim1: 1, dim2: 2));
            System = K(h.System.narrow(1, 0, used + 1).narrow(2, 0, used + 1));
            Block = K(System.narrow(1, 1, used).narrow(2, 1, used));
            BlockDiagonal = K(Block.diagonal(dim1: 1, dim2: 2));
            Rhs = K(h.Rhs.narrow(1, 0, used + 1));
            Alpha = K(h.Alpha.narrow(2, 0, used));
            GramRow = Enumerable.Range(0, h.Memory).Select(i => K(h.Gram.select(1, i).narrow(1, 0, used))).ToArray();
            GramCol = Enumerable.Range(0, h.Memory).Select(i => K(h.Gram.select(2, i).narrow(1, 0, used))).ToArray();
        }

        public int Used { get; }
        public Tensor Ps { get; }
        public Tensor Gs { get; }
        public Tensor GsT { get; }
        public Tensor Gram { get; }
        public Tensor GramDiagonal { get; }
        public Tensor System { get; }
        public Tensor Block { get; }
        public Tensor BlockDiagonal { get; }
        public Tensor Rhs { get; }
        public Tensor Alpha { get; }
        public Tensor[] GramRow { get; }
        public Tensor[] GramCol { get; }
    }
}
