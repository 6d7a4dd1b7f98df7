using System.Globalization;
using TorchSharp;
using static TorchSharp.torch;

namespace Deq.Solvers;

/// <summary>Turns the ledger's host copy into a <see cref="SolverResult"/>: statuses, reasons, per-element numbers.</summary>
internal static class SolveOutcome
{
    public static SolverResult Build(SolveContext ctx, LedgerSnapshot s, Tensor? best, Tensor z0, int batchMetAt)
    {
        var o = ctx.Options;
        int steps = ctx.Step;
        long b = ctx.Batch;
        // No step at all, or f(z0) was not finite for an element: z0 itself is the best there is.
        var value = (best ?? z0.detach().reshape(b, ctx.Width).clone()).reshape(ctx.Shape);
        best?.Dispose();
        value.DetachFromDisposeScope();
        torch.CurrentDisposeScope?.Attach(value);

        var abs = new double[b];
        var rel = new double[b];
        var converged = new bool[b];
        var status = new SolverStatus[b];
        var stepsPer = new int[b];
        var relTrace = new double[b, steps];
        var nonFinite = new List<long>();
        var ranAway = new List<long>();
        var blewUp = new List<long>();
        for (long i = 0; i < b; i++)
        {
            for (int t = 0; t < steps; t++) relTrace[i, t] = Rel(s.Abs[i, t], s.FzNorm[i, t]);
            int at = s.BestStep[i];
            (abs[i], rel[i]) = at > 0 ? (s.Abs[i, at - 1], relTrace[i, at - 1]) : (double.PositiveInfinity, double.PositiveInfinity);
            if (s.Failed[i])
            {
                int t = s.FailedAt[i] - 1;           // the 0-based index of the failing step
                stepsPer[i] = t + 1;
                bool finite = double.IsFinite(s.Metric[i, t]) && double.IsFinite(s.FzNorm[i, t]);
                status[i] = finite ? SolverStatus.Diverged : SolverStatus.NonFinite;
                (finite ? s.FzNorm[i, t] > s.GrowthCap[i] ? ranAway : blewUp : nonFinite).Add(i);
                continue;
            }
            converged[i] = at > 0 && s.Metric[i, at - 1] <= o.Tol;
            stepsPer[i] = converged[i] ? FirstMet(s, i, o.Tol, steps) : steps;
            status[i] = converged[i] || batchMetAt > 0 ? SolverStatus.Converged : ctx.Stopped ?? SolverStatus.MaxIterations;
        }

        SolverStatus overall;
        var reasons = new List<string>();
        string measure = o.Stop.ToString().ToLowerInvariant();
        if (converged.All(c => c) || batchMetAt > 0) overall = SolverStatus.Converged;
        else if (ctx.Stopped is { } stopped) overall = stopped;
        else if (nonFinite.Count > 0) overall = SolverStatus.NonFinite;
        else if (ranAway.Count + blewUp.Count > 0) overall = SolverStatus.Diverged;
        else overall = SolverStatus.MaxIterations;
        if (batchMetAt > 0)
        {
            var above = Enumerable.Range(0, (int)b).Where(i => !converged[i]).Select(i => (long)i).ToList();
            reasons.Add($"met {measure} tolerance {o.Tol:E1} over the batch in {steps} steps" + (above.Count > 0 ? $"; batch element(s) {List(above)} alone did not" : ""));
        }
        else if (overall == SolverStatus.Converged) reasons.Add($"met {measure} tolerance {o.Tol:E1} in {steps} steps");
        if (ctx.StopReason.Length > 0) reasons.Add(ctx.StopReason);
        if (nonFinite.Count > 0)
            reasons.Add($"f returned NaN or Inf for batch element(s) {List(nonFinite)} (first at step {nonFinite.Min(i => s.FailedAt[i])}); they keep their lowest finite iterate");
        if (ranAway.Count > 0)
        {
            long i = ranAway[0];
            double grown = s.FzNorm[i, s.FailedAt[i] - 1];
            reasons.Add($"batch element(s) {List(ranAway)} ran away: ||f(z)|| grew to {grown:E2}, over MaxGrowth = {o.MaxGrowth:E0} x its start {s.Start[i]:E2} (no fixed point in reach); they keep their best iterate");
        }
        if (blewUp.Count > 0)
        {
            long i = blewUp[0];
            int t = s.FailedAt[i] - 1;
            reasons.Add($"residual of batch element(s) {List(blewUp)} (element {i}: {s.Metric[i, t]:E2} at step {t + 1}) exceeds DivergenceFactor = {o.DivergenceFactor:E0} x its lowest; they keep their best iterate");
        }
        if (overall != SolverStatus.Converged && ctx.Stopped is null && !converged.Zip(s.Failed).All(p => p.First || p.Second))
        {
            double worst = Enumerable.Range(0, (int)b).Where(i => !s.Failed[i]).Max(i => s.BestStep[i] > 0 ? s.Metric[i, s.BestStep[i] - 1] : double.PositiveInfinity);
            reasons.Add($"stopped at MaxIter = {o.MaxIter} steps, worst {measure} residual {worst:E2} > tol {o.Tol:E1}");
        }

        return new SolverResult(value, overall, string.Join("; ", reasons), steps, ctx.Evaluations, abs, rel,
            Worst(s.Abs, s, steps), Worst(relTrace, s, steps), converged, ctx.Name)
        {
            StepsPerElement = stepsPer,
            BestStepPerElement = s.BestStep,
            StatusPerElement = status,
            AbsTracePerElement = s.Abs,
            RelTracePerElement = relTrace,
        };
    }

    static double Rel(double abs, double fzNorm) => abs / (fzNorm + 1e-12);

    // The first step whose metric met the tolerance while healthy: when the element's lowest first fell to Tol.
    static int FirstMet(LedgerSnapshot s, long i, double tol, int steps)
    {
        for (int t = 0; t < steps; t++)
            if (s.Metric[i, t] <= tol && s.FzNorm[i, t] <= s.GrowthCap[i]) return t + 1;
        return steps;
    }

    // The worst element still in play at each step (a failed element counts up to its failing step).
    static double[] Worst(double[,] trace, LedgerSnapshot s, int steps)
    {
        long b = trace.GetLength(0);
        var worst = new double[steps];
        for (int t = 0; t < steps; t++)
        {
            double w = double.NegativeInfinity;
            for (long i = 0; i < b; i++)
                if (!s.Failed[i] || t < s.FailedAt[i]) w = double.IsNaN(trace[i, t]) ? double.NaN : Math.Max(w, trace[i, t]);
            worst[t] = w;
        }
        return worst;
    }

    static string List(List<long> elements) =>
        "[" + string.Join(", ", elements.Take(8).Select(e => e.ToString(CultureInfo.InvariantCulture))) + (elements.Count > 8 ? ", ..." : "") + "]";
}
