using System.Diagnostics;
using Deq.Solvers;
using TorchSharp;
using static TorchSharp.torch;

namespace Deq.Cli;

/// <summary>`deq solvers`: the three solvers on one random layer tanh(W z + U x + b).</summary>
internal static class SolverComparison
{
    public static int Run(string[] args)
    {
        var opts = CliArgs.Parse(args, new() { ["width"] = "256", ["batch"] = "8", ["rho"] = "0.95", ["seed"] = "0", ["tol"] = "1e-6" });
        int width = opts.Int("width"), batch = opts.Int("batch");
        double rho = opts.Double("rho"), tol = opts.Double("tol");
        using var scope = torch.NewDisposeScope();
        using var g = new Generator((ulong)opts.Int("seed"), torch.CPU);
        // Symmetric W with eigenvalues up to rho: its spectral radius is rho, a slow contraction.
        var a = torch.randn(width, width, dtype: ScalarType.Float64, generator: g);
        var w = (a + a.T) / 2;
        w *= rho / torch.linalg.eigvalsh(w).abs().max().item<double>();
        var injection = torch.randn(batch, width, dtype: ScalarType.Float64, generator: g);
        Func<Tensor, Tensor> f = z => torch.tanh(torch.matmul(z, w.T) + injection);
        var o = new SolverOptions(MaxIter: 500, Tol: tol);

        Console.WriteLine($"Layer tanh(Wz + x), width {width}, batch {batch}, spectral radius of W = {rho}, relative tol {tol:E0}, float64 on CPU");
        Console.WriteLine($"{"solver",-24} {"status",-14} {"steps",6} {"f evals",8} {"rel residual",13} {"ms",8}");
        foreach (var (name, solver) in new (string, Solver)[]
        {
            ("forward", ForwardIteration.Create(o)),
            ("anderson (m=5)", Anderson.Create(o)),
            ("broyden", Broyden.Create(o)),
            ("broyden + line search", Broyden.Create(o, new BroydenOptions(LineSearch: true))),
        })
        {
            var clock = Stopwatch.StartNew();
            var r = solver(f, torch.zeros(batch, width, dtype: ScalarType.Float64));
            clock.Stop();
            Console.WriteLine($"{name,-24} {r.Status,-14} {r.Steps,6} {r.Evaluations,8} {r.RelLowest,13:E2} {clock.Elapsed.TotalMilliseconds,8:F1}");
        }
        return 0;
    }
}
