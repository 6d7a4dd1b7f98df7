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
        var solver = new SolverMethod<History>("anderson", (ctx, it) => new History(ctx, a.Memory, it.Z), (ctx, h, it) =>
        {
            int k = ctx.Step - 1, m = a.Memory, slot = k % m;
            int used = Math.Min(k + 1, m);
            h.Xs.select(1, slot).copy_(it.Z);
            var g = h.Gs.select(1, slot).copy_(it.Fz).sub_(it.Z);
            // One new row (and column) of the Gram matrix G G^T per step, not the whole of it.
            var row = torch.bmm(g.unsqueeze(1), h.Gs.narrow(1, 0, used).transpose(1, 2)).squeeze(1);    // [b, used]
            h.Gram.select(1, slot).narrow(1, 0, used).copy_(row);
            h.Gram.select(2, slot).narrow(1, 0, used).copy_(row);
            // A singular mixing system (only with Lambda = 0 and a repeated history) takes a plain step instead.
            var next = used == 1 ? it.Fz : Mix(h, used, a) ?? it.Fz;
            return new Iterate(next, ctx.Evaluate(next, done: it));
        }).ToSolver(options);
        return SolverDescriptions.Register(solver, $"anderson(m={a.Memory}, {SolverDescriptions.Limits((options ?? SolverOptions.Default).Validate())})");
    }

    // Past iterates and their residuals g = f(z) - z, [batch, m, width], overwritten as a ring (keeping g, not
    // f, lets the mixing run as batched products with no [batch, m, width] temporary); the residuals' Gram
    // matrix [batch, m, m]; and the bordered mixing system [batch, m + 1, m + 1], its border fixed.
    sealed class History
    {
        public History(SolveContext ctx, int m, Tensor z)
        {
            Tensor Zeros(params long[] shape) => ctx.Keep(torch.zeros(shape, dtype: z.dtype, device: z.device));
            Xs = Zeros(ctx.Batch, m, ctx.Width);
            Gs = Zeros(ctx.Batch, m, ctx.Width);
            Gram = Zeros(ctx.Batch, m, m);
            System = Zeros(ctx.Batch, m + 1, m + 1);
            System.select(1, 0).narrow(1, 1, m).fill_(1);
            System.select(2, 0).narrow(1, 1, m).fill_(1);
            Rhs = Zeros(ctx.Batch, m + 1, 1);
            Rhs.select(1, 0).fill_(1);
        }

        public Tensor Xs { get; }
        public Tensor Gs { get; }
        public Tensor Gram { get; }
        public Tensor System { get; }
        public Tensor Rhs { get; }
    }

    // Solve [0 1^T; 1 GG^T + lambda I] [c; alpha] = [1; 0] per batch element, G = F - X.
    static Tensor? Mix(History h, int used, AndersonOptions a)
    {
        long b = h.Gram.shape[0];
        var gram = h.Gram.narrow(1, 0, used).narrow(2, 0, used);
        var system = h.System.narrow(1, 0, used + 1).narrow(2, 0, used + 1);
        var block = system.narrow(1, 1, used).narrow(2, 1, used);
        block.copy_(gram);
        // Scale the ridge by the residual size so lambda is unit-free.
        var scale = gram.diagonal(dim1: 1, dim2: 2).mean([1]).clamp_min(1e-30).reshape(b, 1);
        block.diagonal(dim1: 1, dim2: 2).add_(scale.mul_(a.Lambda));
        Tensor alpha;
        try
        {
            alpha = torch.linalg.solve(system, h.Rhs.narrow(1, 0, used + 1)).narrow(1, 1, used).transpose(1, 2);   // [b, 1, used]
        }
        catch (System.Runtime.InteropServices.ExternalException)
        {
            return null;
        }
        // sum_i alpha_i (x_i + beta g_i): beta times the mixed f values plus (1 - beta) times the mixed iterates.
        return torch.bmm(alpha, h.Xs.narrow(1, 0, used)).add_(torch.bmm(alpha, h.Gs.narrow(1, 0, used)), alpha: a.Beta).squeeze(1);
    }
}
