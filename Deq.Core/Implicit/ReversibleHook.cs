using TorchSharp;
using static TorchSharp.torch;

namespace Deq.Implicit;

/// <summary>
/// The autograd node of <see cref="Reversible.Solve"/>: identity on the last z in the forward pass; in the backward
/// pass it inverts the coupled steps one by one from the saved (y, z), and backpropagates through each step's two
/// applications of f as it goes, so one graph of f lives at a time. It returns the gradients of x and the parameters.
/// </summary>
internal sealed class ReversibleHook : torch.autograd.SingleTensorFunction<ReversibleHook>
{
    const string ProblemKey = "reversible";

    /// <summary>What backward needs besides the saved tensors.</summary>
    public sealed record Problem(Func<Tensor, Tensor, Tensor> F, Tensor[] Parameters, double Beta, int Steps);

    public override string Name => "DeqReversible";

    [ThreadStatic] static torch.autograd.AutogradContext? _attaching;

    /// <summary>z attached to autograd through x and the parameters that need a gradient.</summary>
    public static Tensor Attach(Tensor z, Tensor y, Tensor x, Problem problem)
    {
        var ps = problem.Parameters.Where(p => p.requires_grad).ToArray();
        object[] vars = [z, problem with { Parameters = ps }, y, x, .. ps];
        var output = apply(vars);
        AdjointHook.ReleaseOutputPlaceholder(_attaching);
        _attaching = null;
        return output;
    }

    public override Tensor forward(torch.autograd.AutogradContext ctx, params object[] vars)
    {
        _attaching = ctx;
        // vars: z, the problem, y, x, the parameters. z, y and x are saved (the node owns them); z is returned.
        ctx.save_for_backward([(Tensor)vars[0], (Tensor)vars[2], (Tensor)vars[3]]);
        ctx.save_data(ProblemKey, vars[1]);
        return ((Tensor)vars[0]).view_as((Tensor)vars[0]);
    }

    public override List<Tensor> backward(torch.autograd.AutogradContext ctx, Tensor gradOutput)
    {
        var problem = (Problem)ctx.get_data(ProblemKey);
        var none = Enumerable.Repeat<Tensor>(null!, 4 + problem.Parameters.Length).ToList();
        if (gradOutput.IsInvalid) return none;
        var saved = ctx.get_saved_variables();
        try
        {
            var (xGrad, pGrads) = Reverse(saved[0], saved[1], saved[2], gradOutput, problem);
            return [null!, null!, null!, saved[2].requires_grad ? xGrad : null!, .. pGrads];
        }
        catch (Exception e)
        {
            // As in AdjointHook: nothing may cross libtorch's engine; Equilibrium.Backward rethrows it.
            BackwardFaults.Record(e);
            return [null!, null!, null!, torch.zeros_like(saved[2]), .. problem.Parameters.Select(p => torch.zeros_like(p))];
        }
        finally
        {
            foreach (var t in saved) t.Dispose();
            gradOutput.Dispose();
        }
    }

    static (Tensor X, Tensor[] Parameters) Reverse(Tensor zLast, Tensor yLast, Tensor x, Tensor gradZ, Problem problem)
    {
        using var scope = torch.NewDisposeScope();
        using var grad = torch.enable_grad();
        double beta = problem.Beta;
        var ps = problem.Parameters;
        var xd = x.detach().requires_grad_(true);
        var (z, y) = (zLast.detach(), yLast.detach());
        var (vz, vy) = (gradZ.detach(), torch.zeros_like(gradZ));
        var xGrad = torch.zeros_like(x);
        var pGrads = ps.Select(p => torch.zeros_like(p)).ToArray();

        // One vector-Jacobian product of f at `at` with cotangent v: returns f(at) and d/dz (detached, not to be written
        // in place: f may return a view of its input, a gradient may alias the cotangent), and accumulates d/dx and
        // d/dθ. Its graph and gradients go as soon as it returns, so a step holds one graph of f at a time.
        (Tensor Fz, Tensor Dz) Vjp(Tensor at, Tensor v)
        {
            using var inner = torch.NewDisposeScope();
            var p = at.detach().requires_grad_(true);
            var fp = Equilibrium.Apply(z => problem.F(z, xd), p);
            var g = torch.autograd.grad([fp], [p, xd, .. ps], [v], allow_unused: true);
            if (g[1] is { IsInvalid: false } gx) xGrad.add_(gx);
            for (int i = 0; i < ps.Length; i++)
                if (g[2 + i] is { IsInvalid: false } gp) pGrads[i].add_(gp);
            return inner.MoveToOuter(fp.detach(), OrZero(g[0], p));
        }

        for (int k = problem.Steps; k > 0; k--)
        {
            // Undo z' = (1 - beta) z + beta f(y'): rebuild z, and pass the cotangent of z' to y' (and x, θ).
            Tensor zPrev, vyAll;
            using (var cot = vz.mul(beta))
            {
                var (fy, dy) = Vjp(y, cot);
                using (fy) zPrev = torch.add(z, fy, alpha: -beta).div_(1 - beta);
                using (dy) vyAll = dy + vy;
            }
            // Undo y' = (1 - beta) y + beta f(z): rebuild y, and pass the cotangent of y' to z (and x, θ).
            Tensor yPrev, vzPrev;
            using (var cot = vyAll.mul(beta))
            {
                var (fz, dz) = Vjp(zPrev, cot);
                using (fz) yPrev = torch.add(y, fz, alpha: -beta).div_(1 - beta);
                using (dz) vzPrev = torch.add(dz, vz, alpha: 1 - beta);
            }
            // The previous step's state goes now, so the reversal holds one state whatever the number of steps.
            foreach (var t in new[] { z, y, vz, vy }) t.Dispose();
            (z, y, vz, vy) = (zPrev, yPrev, vzPrev, vyAll.mul_(1 - beta));
        }
        // Into the scope around the caller's backward(), as in AdjointHook; libtorch holds its own reference.
        return (xGrad.MoveToOuterDisposeScope(), pGrads.Select(g => g.MoveToOuterDisposeScope()).ToArray());
    }

    static Tensor OrZero(Tensor? g, Tensor like) => g is null || g.IsInvalid ? torch.zeros_like(like) : g;
}
