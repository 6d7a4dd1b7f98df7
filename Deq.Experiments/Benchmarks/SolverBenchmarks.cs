using System.Diagnostics;
using Deq.Layers;
using Deq.Models;
using Deq.Solvers;
using TorchSharp;
using static TorchSharp.torch;

namespace Deq.Experiments.Benchmarks;

/// <summary>One solver's cost: f evaluations to the tolerance, and what it spends outside f.</summary>
/// <param name="Solver">forward, anderson or broyden.</param>
/// <param name="Evaluations">f evaluations.</param>
/// <param name="Steps">Solver steps.</param>
/// <param name="Converged">Whether the tolerance was met.</param>
/// <param name="RelResidual">Lowest relative residual (worst over the batch).</param>
/// <param name="Seconds">Wall time of the solve.</param>
/// <param name="FSeconds">Time inside f.</param>
public sealed record SolverCost(string Solver, int Evaluations, int Steps, bool Converged, double RelResidual, double Seconds, double FSeconds)
{
    /// <summary>(time per step - its f time) / f time: the solver's own overhead relative to f.</summary>
    public double OverheadFraction => FSeconds > 0 ? (Seconds - FSeconds) / FSeconds : double.NaN;
}

/// <summary>Solver costs on DEQ cores: overhead over f, f evaluations to tolerance, and f's arithmetic rate.</summary>
public static class SolverBenchmarks
{
    /// <summary>The three solvers the paper's family uses, at one tolerance and iteration limit.</summary>
    public static (string Name, Solver Solver)[] Solvers(double tol, int maxIter)
    {
        var o = new SolverOptions(MaxIter: maxIter, Tol: tol);
        return [("forward", ForwardIteration.Create(o)), ("anderson", Anderson.Create(o)), ("broyden", Broyden.Create(o))];
    }

    /// <summary>Runs each solver on f from z0 (no grad), timing f inside it. One untimed warm-up solve each.</summary>
    public static SolverCost[] Costs(Func<Tensor, Tensor> f, Tensor z0, double tol, int maxIter, bool warmUp = true)
    {
        using var _ = torch.no_grad();
        var costs = new List<SolverCost>();
        foreach (var (name, solver) in Solvers(tol, maxIter))
        {
            if (warmUp) using (torch.NewDisposeScope()) solver(f, z0);
            costs.Add(TimedSolve(name, solver, f, z0));
        }
        return [.. costs];
    }

    // One solve, timed in all and inside f, in its own dispose scope.
    static SolverCost TimedSolve(string name, Solver solver, Func<Tensor, Tensor> f, Tensor z0)
    {
        using var scope = torch.NewDisposeScope();
        var timed = new TimedF(f);
        var clock = Stopwatch.StartNew();
        var r = solver(timed.F, z0);
        clock.Stop();
        return new SolverCost(name, r.Evaluations, r.Steps, r.Converged, r.RelLowest, clock.Elapsed.TotalSeconds, timed.Elapsed.TotalSeconds);
    }

    /// <summary>
    /// Per-iteration overhead over f, (solve time - time inside f) / time inside f, on <paramref name="f"/>:
    /// each solver runs <paramref name="steps"/> steps (the tolerance is unreachable);
    /// the lowest solve time and the lowest time per f call of <paramref name="repeats"/> timed solves after a warm-up.
    /// </summary>
    public static SolverCost[] Overhead(Func<Tensor, Tensor> f, Tensor z0, int steps, int repeats, (string Name, Solver Solver)[]? solvers = null)
    {
        using var _ = torch.no_grad();
        var costs = new List<SolverCost>();
        foreach (var (name, solver) in solvers ?? Solvers(1e-30, steps))
        {
            WarmUp(() => solver(f, z0));
            var runs = new List<SolverCost>();
            for (int r = 0; r < repeats; r++)
                runs.Add(TimedSolve(name, solver, f, z0));
            // The least-disturbed solve time and f time, each on its own: on a shared machine the others
            // measure the neighbours, and the least ratio would favour runs whose f happened to be slow.
            var first = runs[0];
            double seconds = runs.Min(c => c.Seconds), fPerCall = runs.Min(c => c.FSeconds / c.Evaluations);
            costs.Add(first with { Seconds = seconds, FSeconds = fPerCall * first.Evaluations });
        }
        return [.. costs];
    }

    // The steady state a long run sees: .NET compiles a method first without optimisation and recompiles it
    // optimised only after some calls (tiered compilation), so one warm-up solve measures partly unoptimised code
    // (on the toy, Anderson 1.7x after one warm-up solve, 1.1x with tiering off). Solve for at least a second
    // and 3 solves, at most 300.
    static void WarmUp(Func<SolverResult> solve)
    {
        var clock = Stopwatch.StartNew();
        for (int i = 0; i < 300 && (i < 3 || clock.Elapsed.TotalSeconds < 1); i++)
            using (torch.NewDisposeScope()) solve();
    }

    /// <summary>
    /// The toy's numbers: per-iteration overhead over f of each solver (f with W bound once), and the time of
    /// one f call with W bound once and with weight norm recomputed per call. One thread, float32.
    /// </summary>
    public static (SolverCost[] Costs, double BoundFMicroseconds, double PerCallFMicroseconds) Toy(int steps = 30, int repeats = 15)
    {
        using var scope = torch.NewDisposeScope();
        using var toy = new ToyDeq();
        var bound = toy.Bind();
        var costs = Overhead(bound.F, bound.Z0, steps, repeats);
        var perCall = toy.BindPerCall();
        double FTime(Func<Tensor, Tensor> f)
        {
            using var _ = torch.no_grad();
            double best = double.PositiveInfinity;
            for (int r = 0; r < repeats; r++)
            {
                var clock = Stopwatch.StartNew();
                for (int i = 0; i < 50; i++) using (torch.NewDisposeScope()) f(bound.Z0);
                best = Math.Min(best, clock.Elapsed.TotalSeconds / 50 * 1e6);
            }
            return best;
        }
        return (costs, FTime(bound.F), FTime(perCall.F));
    }

    /// <summary>
    /// Briefly trains a small DEQ-TrellisNet language model (implicit gradients, Adam) on a synthetic
    /// learnable token stream and returns it with a batch to solve on: the "trained" f of the f-evaluation count.
    /// </summary>
    public static (DeqTrellisNetLM Model, Tensor Tokens) BrieflyTrained(int width, int seqLen, int batch, int steps, int seed = 0)
    {
        torch.manual_seed(seed);
        int nOut = Math.Max(2, width * 2 / 7);
        var config = new DeqTrellisNetConfig(NToken: 50, NInp: nOut, NHid: width - nOut, NOut: nOut, SeqLen: seqLen,
            Schedule: EquilibriumSchedule.Lean(forwardIterations: 30, backwardIterations: 30, forwardTol: 1e-3, backwardTol: 1e-4));
        var model = new DeqTrellisNetLM(config);
        var optimizer = torch.optim.Adam(model.parameters(), lr: 3e-3);
        var g = new Generator((ulong)seed, torch.CPU);
        Tensor Sequence()
        {
            // Noisy counting mod 50 with a random stride per row: predictable from context, not from the token alone.
            var start = torch.randint(0, 50, [batch, 1], generator: g);
            var stride = torch.randint(1, 4, [batch, 1], generator: g);
            var t = (start + stride * torch.arange(seqLen + 1).unsqueeze(0)) % 50;
            return t.to(ScalarType.Int64);
        }
        model.train();
        for (int step = 0; step < steps; step++)
        {
            using var scope = torch.NewDisposeScope();
            var seq = Sequence();
            var output = model.Forward(seq.narrow(1, 0, seqLen), null, step);
            var loss = model.Loss(output.Hidden, seq.narrow(1, 1, seqLen));
            optimizer.zero_grad();
            loss.backward();
            optimizer.step();
            if (step % 10 == 0) Progress.Report($"bench: brief training step {step}/{steps}, loss {loss.item<float>():F3}");
        }
        model.eval();
        var tokens = Sequence().narrow(1, 0, seqLen).DetachFromDisposeScope();
        return (model, tokens);
    }

    /// <summary>
    /// Achieved GFLOP/s of the TrellisNet f (its convolution counted as the matmul it is: 2 B T (k h) (4 h) flops;
    /// the gates' elementwise work is not counted) against a plain matmul of the same shapes. Returns (f, matmul) GFLOP/s.
    /// </summary>
    public static (double F, double Matmul) Gflops(int width, int seqLen, int batch, int repeats)
    {
        using var scope = torch.NewDisposeScope();
        using var _ = torch.no_grad();
        using var core = BenchCore.Create(CoreFamily.TrellisNet, width, seqLen, batch, torch.CPU);
        var bound = core.Bind();
        var z = torch.randn(bound.Z0.shape);
        long k = 2, h = width;
        double flops = 2.0 * batch * seqLen * (k * h) * (4 * h);
        var a = torch.randn(batch * seqLen, k * h);
        var w = torch.randn(k * h, 4 * h);
        double Rate(Action op)
        {
            op();
            var clock = Stopwatch.StartNew();
            for (int i = 0; i < repeats; i++) using (torch.NewDisposeScope()) op();
            return flops * repeats / clock.Elapsed.TotalSeconds / 1e9;
        }
        double fRate = Rate(() => bound.F(z));
        double mRate = Rate(() => torch.matmul(a, w));
        return (fRate, mRate);
    }
}

/// <summary>
/// The toy of issue 14, as a peer PyTorch DEQ library benchmarks itself: f(z) = tanh(W z + U x) with
/// weight norm on W, width D, a batch of random inputs x, float32. <see cref="Bind"/> computes the
/// weight-normalised W and U x once, so f is one matmul, one add and a tanh.
/// </summary>
public sealed class ToyDeq : IDisposable
{
    readonly WeightNormLinear _w, _u;
    readonly Tensor _x;

    /// <summary>A seeded toy of width <paramref name="width"/> and batch <paramref name="batch"/>.</summary>
    public ToyDeq(int width = 128, int batch = 64, int seed = 0)
    {
        torch.manual_seed(seed);
        // W's spectral norm about 0.5 (N(0, 0.5 / (2 sqrt D)) entries), so f contracts and every solver converges.
        _w = new WeightNormLinear(width, width, hasBias: false, weightNorm: true, initStd: 0.25 / Math.Sqrt(width));
        _u = new WeightNormLinear(width, width, hasBias: true, weightNorm: false, initStd: 1.0 / Math.Sqrt(width));
        _x = torch.randn(batch, width);
        (Width, Batch) = (width, batch);
    }

    /// <summary>D.</summary>
    public int Width { get; }
    /// <summary>Batch size.</summary>
    public int Batch { get; }

    /// <summary>f bound to x, with W = g v / ||v|| computed here once (on the tape when grad is on), and z0 = 0.</summary>
    public BoundCore Bind()
    {
        var linear = _w.Bind();
        var injection = _u.Forward(_x);
        return new BoundCore(z => torch.tanh(linear(z).add_(injection)), torch.zeros(Batch, Width));
    }

    /// <summary>The same f recomputing W = g v / ||v|| on every call (what Bind saves).</summary>
    public BoundCore BindPerCall()
    {
        var injection = _u.Forward(_x);
        return new BoundCore(z => torch.tanh(_w.Forward(z).add_(injection)), torch.zeros(Batch, Width));
    }

    /// <summary>Releases the parameters and the input.</summary>
    public void Dispose()
    {
        _w.Dispose();
        _u.Dispose();
        _x.Dispose();
    }
}
