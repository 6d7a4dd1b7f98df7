using Deq.Solvers;
using TorchSharp;
using static TorchSharp.torch;

namespace Deq.Implicit;

/// <summary>Restarted GMRES on (I - J^T) g = rhs, each batch element its own Krylov space (see <see cref="LinearSolve.Gmres"/>).</summary>
internal static class Gmres
{
    public static SolverResult Solve(Func<Tensor, Tensor> vjp, Tensor rhs, SolverOptions o, int restart)
    {
        using var scope = torch.NewDisposeScope();
        long b = rhs.shape[0], n = rhs.numel() / b;
        var shape = rhs.shape;
        var flatRhs = rhs.reshape(b, n);
        // (I - J^T) v, in place in the product's result: each call holds one new copy of z.
        Tensor Apply(Tensor v) => vjp(v.reshape(shape)).reshape(b, n).neg_().add_(v);
        var rhsNorm = flatRhs.norm(1);
        double[] Metric(double[] abs, double[] rhsHost) =>
            o.Stop == StopMode.Absolute ? abs : abs.Select((a, i) => a / (rhsHost[i] + 1e-12)).ToArray();
        var rhsHost = Residuals.ToHost(rhsNorm);

        var x = torch.zeros(b, n, dtype: rhs.dtype, device: rhs.device);
        var r = flatRhs;
        int products = 0;
        var absTrace = new List<double>();
        var relTrace = new List<double>();
        double[] abs = rhsHost;
        SolverStatus? status = null;
        string reason = "";
        while (status is null)
        {
            using var cycle = torch.NewDisposeScope();
            var beta = r.norm(1);
            var v = torch.zeros(b, restart + 1, n, dtype: rhs.dtype, device: rhs.device);
            var h = torch.zeros(b, restart + 1, restart, dtype: rhs.dtype, device: rhs.device);
            v.select(1, 0).copy_(r).div_(Safe(beta).unsqueeze(1));
            var e1 = torch.zeros(b, restart + 1, 1, dtype: rhs.dtype, device: rhs.device);
            e1.select(1, 0).copy_(beta.unsqueeze(1));
            Tensor? y = null;
            int k = 0;
            for (int j = 0; j < restart; j++)
            {
                using var step = torch.NewDisposeScope();
                var w = Apply(v.select(1, j));
                products++;
                // Modified Gram-Schmidt against the basis so far.
                for (int i = 0; i <= j; i++)
                {
                    var vi = v.select(1, i);
                    var hij = torch.bmm(w.unsqueeze(1), vi.unsqueeze(2)).reshape(b);
                    h.select(1, i).select(1, j).copy_(hij);
                    w.addcmul_(vi, hij.unsqueeze(1), -1);
                }
                var hn = w.norm(1);
                h.select(1, j + 1).select(1, j).copy_(hn);
                v.select(1, j + 1).copy_(w).div_(Safe(hn).unsqueeze(1));
                var hj = h.narrow(1, 0, j + 2).narrow(2, 0, j + 1);
                var rhsJ = e1.narrow(1, 0, j + 2);
                var yj = torch.linalg.lstsq(hj, rhsJ).Solution;          // [b, j+1, 1]
                var res = (rhsJ - torch.bmm(hj, yj)).squeeze(2).norm(1);
                abs = Residuals.ToHost(res);
                var metric = Metric(abs, rhsHost);
                absTrace.Add(abs.Max());
                relTrace.Add(abs.Select((a, i) => a / (rhsHost[i] + 1e-12)).Max());
                y?.Dispose();
                y = yj.squeeze(2).MoveToOuterDisposeScope();
                k = j + 1;
                if (metric.Any(m => !double.IsFinite(m)))
                    (status, reason) = (SolverStatus.NonFinite, $"the vector-Jacobian product returned NaN or Inf at product {products}");
                else if (metric.All(m => m <= o.Tol))
                    (status, reason) = (SolverStatus.Converged, $"met {o.Stop.ToString().ToLowerInvariant()} tolerance {o.Tol:E1} in {products} products");
                else if (products >= o.MaxIter)
                    (status, reason) = (SolverStatus.MaxIterations, $"stopped at MaxIter = {o.MaxIter} products, worst residual {metric.Max():E2} > tol {o.Tol:E1}");
                if (status is not null) break;
            }
            if (status != SolverStatus.NonFinite)
                x.add_(torch.bmm(y!.unsqueeze(1), v.narrow(1, 0, k)).squeeze(1));
            if (status is null)
            {
                // The true residual starts the next cycle (the Arnoldi estimate drifts in finite precision).
                var next = Apply(x).neg_().add_(flatRhs).MoveToOuterDisposeScope();
                if (!ReferenceEquals(r, flatRhs)) r.Dispose();
                r = next;
                products++;
            }
        }
        var value = x.reshape(shape).MoveToOuterDisposeScope();
        var rel = abs.Select((a, i) => a / (rhsHost[i] + 1e-12)).ToArray();
        var converged = Metric(abs, rhsHost).Select(m => m <= o.Tol).ToArray();
        return new SolverResult(value, status.Value, reason, products, products, abs, rel, absTrace, relTrace, converged, $"gmres({restart})");
    }

    // A zero norm (exact solution, or rhs = 0) divides nothing: 1 keeps the zero vector zero.
    static Tensor Safe(Tensor norm) => torch.where(norm > 0, norm, torch.ones_like(norm));
}
