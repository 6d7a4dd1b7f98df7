using Deq.Solvers;
using TorchSharp;
using static TorchSharp.torch;

namespace Deq.Implicit;

/// <summary>
/// The forward pass of <see cref="Reversible.Solve"/>: the coupled relaxation without a graph, ending on the
/// last finite state pair (y, z), since backward inverts from exactly that pair.
/// </summary>
internal static class ReversibleForward
{
    public static (Tensor Y, Tensor Z, SolverResult Stats) Run(Func<Tensor, Tensor, Tensor> f, Tensor x, Tensor z0, ReversibleOptions o)
    {
        if (z0.dim() < 1 || z0.shape[0] < 1 || !z0.is_floating_point())
            throw new ArgumentException($"Reversible.Solve: z0 must be a batch-first floating-point tensor; got {z0.dtype} of shape [{string.Join(", ", z0.shape)}].", nameof(z0));
        using var scope = torch.NewDisposeScope();
        using var noGrad = torch.no_grad();
        var xd = x.detach();
        double beta = o.Beta;
        // f(z, x) as a tensor of our own (f's temporaries freed at once; a returned input copied), checked.
        Tensor F(Tensor z)
        {
            using var inner = torch.NewDisposeScope();
            var fz = f(z, xd);
            if (!fz.shape.SequenceEqual(z.shape) || fz.dtype != z.dtype)
                throw new InvalidOperationException($"Reversible.Solve: f(z, x) must return z's shape and dtype: z is {z.dtype} [{string.Join(", ", z.shape)}], f(z, x) is {fz.dtype} [{string.Join(", ", fz.shape)}].");
            return inner.MoveToOuter(inner.Contains(fz) ? fz : fz.clone());
        }
        var z = z0.detach().clone();
        var y = z.clone();
        var fz = F(z);
        if (!Finite(fz)) throw new InvalidOperationException("Reversible.Solve: f(z0, x) is not finite (NaN or Inf).");
        var (abs, rel) = Residuals.PerElement(z, fz);
        List<double> absTrace = [abs.Max()], relTrace = [rel.Max()];
        int steps = 0, evaluations = 1;
        var status = SolverStatus.MaxIterations;
        var reason = $"{o.MaxIterations} steps without every element at relative residual {o.Tolerance:0.#E+0}";
        while (true)
        {
            if (rel.All(r => r <= o.Tolerance)) { status = SolverStatus.Converged; reason = $"converged in {steps} steps"; break; }
            if (steps == o.MaxIterations) break;
            Tensor y1, z1, fz1;
            // Each step's temporaries go with its scope, and the previous state once replaced: memory stays one state.
            using (var step = torch.NewDisposeScope())
            {
                y1 = y.mul(1 - beta).add_(fz, alpha: beta);
                using (var fy = F(y1)) z1 = z.mul(1 - beta).add_(fy, alpha: beta);
                fz1 = F(z1);
                step.MoveToOuter(y1, z1, fz1);
            }
            evaluations += 2;
            if (!Finite(fz1))
            {
                // The state pair before this step stays the end point, so backward still inverts a finite run.
                foreach (var t in new[] { y1, z1, fz1 }) t.Dispose();
                status = SolverStatus.NonFinite;
                reason = $"f was not finite at step {steps + 1}; the solve ends at step {steps}";
                break;
            }
            foreach (var t in new[] { y, z, fz }) t.Dispose();
            (y, z, fz) = (y1, z1, fz1);
            steps++;
            (abs, rel) = Residuals.PerElement(z, fz);
            absTrace.Add(abs.Max());
            relTrace.Add(rel.Max());
        }
        long b = z.shape[0];
        var value = z.MoveToOuterDisposeScope();
        var stats = new SolverResult(value, status, reason, steps, evaluations, abs, rel, absTrace, relTrace,
            rel.Select(r => r <= o.Tolerance).ToArray(), $"reversible(beta={beta})")
        {
            StepsPerElement = Enumerable.Repeat(steps, (int)b).ToArray(),
            BestStepPerElement = Enumerable.Repeat(steps + 1, (int)b).ToArray(),
            StatusPerElement = Enumerable.Repeat(status, (int)b).ToArray(),
        };
        return (y.MoveToOuterDisposeScope(), value, stats);
    }

    static bool Finite(Tensor t)
    {
        using var _ = torch.NewDisposeScope();
        return torch.isfinite(t).all().item<bool>();
    }
}
