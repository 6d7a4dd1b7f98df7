using System.Diagnostics;
using Deq.Implicit;
using Deq.Solvers;
using TorchSharp;
using static TorchSharp.torch;

namespace Deq.Experiments.Benchmarks;

/// <summary>
/// DEQ against the unrolled weight-tied stack at matched quality: Broyden solves to a relative tolerance and
/// reaches residual r; the stack's depth L is the number of plain iterations (applications of f from z0) that
/// reach r too (capped at MaxDepth). Times are medians over repeats of a training step (forward + backward,
/// Broyden both ways for the DEQ) and of an inference pass (no grad).
/// </summary>
/// <param name="DeqForwardSteps">Broyden steps (= f evaluations) of the forward solve.</param>
/// <param name="DeqResidual">Relative residual Broyden reached.</param>
/// <param name="MatchedDepth">L: plain iterations needed to reach that residual (MaxDepth when they never did).</param>
/// <param name="DepthReachedResidual">Whether plain iteration reached it within MaxDepth.</param>
/// <param name="DeqTrainSeconds">DEQ training step.</param>
/// <param name="UnrolledTrainSeconds">Unrolled training step at depth L.</param>
/// <param name="DeqInferenceSeconds">DEQ forward solve, no grad.</param>
/// <param name="UnrolledInferenceSeconds">L applications of f, no grad.</param>
public sealed record RuntimeComparison(int DeqForwardSteps, double DeqResidual, int MatchedDepth, bool DepthReachedResidual,
    double DeqTrainSeconds, double UnrolledTrainSeconds, double DeqInferenceSeconds, double UnrolledInferenceSeconds)
{
    /// <summary>DEQ over unrolled, training.</summary>
    public double TrainRatio => DeqTrainSeconds / UnrolledTrainSeconds;
    /// <summary>DEQ over unrolled, inference.</summary>
    public double InferenceRatio => DeqInferenceSeconds / UnrolledInferenceSeconds;

    /// <summary>Measures on <paramref name="core"/> with forward tolerance <paramref name="tol"/> (relative) and the backward at tol / 10.</summary>
    public static RuntimeComparison Measure(BenchCore core, double tol, int maxIter, int maxDepth, int repeats)
    {
        var forward = Broyden.Create(new SolverOptions(MaxIter: maxIter, Tol: tol));
        var backward = Broyden.Create(new SolverOptions(MaxIter: maxIter, Tol: tol / 10));
        double residual;
        int steps, depth;
        bool reached;
        using (torch.NewDisposeScope())
        using (torch.no_grad())
        {
            var bound = core.Bind();
            var r = forward(bound.F, bound.Z0);
            (residual, steps) = (r.RelLowest, r.Steps);
            var plain = ForwardIteration.Create(new SolverOptions(MaxIter: maxDepth, Tol: residual))(bound.F, bound.Z0);
            (depth, reached) = (plain.Steps, plain.Converged);
        }
        var deqOptions = new EquilibriumOptions(forward, Adjoint.Implicit(backward));
        var unrolledOptions = new EquilibriumOptions(Adjoint: Adjoint.Unrolled(depth));
        double Train(EquilibriumOptions o) => Median(repeats, () =>
        {
            var bound = core.Bind();
            var eq = Equilibrium.Solve(bound.F, bound.Z0, o);
            Equilibrium.Backward(eq.Z.square().mean());
        });
        double Infer(EquilibriumOptions o) => Median(repeats, () =>
        {
            using var _ = torch.no_grad();
            var bound = core.Bind();
            Equilibrium.Solve(bound.F, bound.Z0, o);
        });
        return new RuntimeComparison(steps, residual, depth, reached,
            Train(deqOptions), Train(unrolledOptions), Infer(deqOptions), Infer(unrolledOptions));
    }

    // One untimed warm-up, then the median of repeats, each in its own dispose scope.
    static double Median(int repeats, Action run)
    {
        using (torch.NewDisposeScope()) run();
        var times = new double[Math.Max(1, repeats)];
        for (int i = 0; i < times.Length; i++)
        {
            using var scope = torch.NewDisposeScope();
            var clock = Stopwatch.StartNew();
            run();
            times[i] = clock.Elapsed.TotalSeconds;
        }
        Array.Sort(times);
        return times[times.Length / 2];
    }
}
