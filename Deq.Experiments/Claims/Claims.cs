using System.Globalization;

namespace Deq.Experiments;

/// <summary>One DEQ against its baseline on one figure (perplexity, bytes): the unit C1 and C2 compare.</summary>
/// <param name="Deq">The DEQ's label.</param>
/// <param name="DeqValue">Its figure.</param>
/// <param name="Baseline">The baseline's label.</param>
/// <param name="BaselineValue">Its figure.</param>
public sealed record ClaimPair(string Deq, double DeqValue, string Baseline, double BaselineValue);

/// <summary>A runtime ratio DEQ / baseline as C4 reads it.</summary>
/// <param name="Comparison">What was timed, e.g. "Transformer training (L = 18)".</param>
/// <param name="Ratio">DEQ time over baseline time.</param>
public sealed record RuntimeRatio(string Comparison, double Ratio);

/// <summary>One point of Figure 3's tolerance sweep as C6 reads it.</summary>
/// <param name="Tolerance">The forward solver's relative tolerance ε.</param>
/// <param name="Perplexity">Validation perplexity at it.</param>
public sealed record TolerancePoint(double Tolerance, double Perplexity);

/// <summary>f evaluations two residual traces need to reach the lowest residual both reach (int.MaxValue: never).</summary>
/// <param name="Broyden">Evaluations of the first trace (Broyden).</param>
/// <param name="Plain">Evaluations of the second (plain iteration).</param>
/// <param name="Target">The residual.</param>
public sealed record CommonResidual(int Broyden, int Plain, double Target);

/// <summary>A copy-memory result as C3 reads it.</summary>
/// <param name="Model">Label.</param>
/// <param name="Loss">Test cross-entropy over the recalled digits.</param>
/// <param name="Accuracy">Fraction of digits recalled right.</param>
public sealed record CopyOutcome(string Model, double Loss, double Accuracy)
{
    /// <summary>Solved: loss below <see cref="Claims.CopySolvedLoss"/> and every digit right (the issue's bar).</summary>
    public bool Solved => Loss < Claims.CopySolvedLoss && Accuracy >= 1 - 1e-12;
}

/// <summary>
/// The paper's claims C1-C6 (issue #12) as pure functions of the figures a run produced, each returning a
/// <see cref="ClaimVerdict"/>. The thresholds are data, here, so a reader sees what "holds" means.
/// </summary>
public static class Claims
{
    /// <summary>C1: a DEQ matches its baseline when its perplexity is at most this fraction above the baseline's.</summary>
    public const double MatchTolerance = 0.03;
    /// <summary>C1 on PTB: both models must reach this test perplexity before the comparison means anything (issue #12).</summary>
    public const double PtbTargetPerplexity = 200;
    /// <summary>C1 on WikiText-2: the same bar.</summary>
    public const double WikiText2TargetPerplexity = 300;
    /// <summary>C2: "far less memory" means at most this fraction of the baseline's (the paper: 14% PTB, 13-41% WT103).</summary>
    public const double MemoryRatioBound = 0.5;
    /// <summary>C3: the smallest blank length T at which copy memory tests long-range retention (the issue's floor).</summary>
    public const int CopyMinimumT = 100;
    /// <summary>C3: "solved" means a test loss below this (and 100% digit accuracy).</summary>
    public const double CopySolvedLoss = 1e-3;
    /// <summary>C4: the DEQ is slower than its baseline by more than 1x and at most this (the paper: 1.64x to 2.82x).</summary>
    public const double SlowdownBound = 3.0;
    /// <summary>C6: "ε &lt; 0.1 suffices": every ε below this costs at most <see cref="MatchTolerance"/> perplexity over the tightest ε.</summary>
    public const double SufficientTolerance = 0.1;
    /// <summary>C6: "too large an ε hurts fast": the loosest ε (at least <see cref="LargeTolerance"/>) costs more than this fraction.</summary>
    public const double LargeToleranceHarm = 0.10;
    /// <summary>C6: the smallest ε counted as "too large".</summary>
    public const double LargeTolerance = 0.3;

    static string N(double v, string format = "0.0") => v.ToString(format, CultureInfo.InvariantCulture);
    static string Pct(double v) => (v >= 0 ? "+" : "") + (v * 100).ToString("0.0", CultureInfo.InvariantCulture) + "%";

    /// <summary>
    /// <paramref name="verdict"/> as a run at <paramref name="scale"/> may state it: at smoke scale (seconds of training, numbers
    /// not meaningful) every claim is "not tested", whatever the figures say; the figures stay in the evidence.
    /// </summary>
    public static ClaimVerdict AtScale(ExperimentScale scale, ClaimVerdict verdict) =>
        scale == ExperimentScale.Smoke && verdict.Outcome != ClaimOutcome.NotTested
            ? verdict with { Outcome = ClaimOutcome.NotTested, Evidence = verdict.Evidence + " (smoke scale: too short to decide)" }
            : verdict;

    /// <summary>Not tested, with the reason.</summary>
    public static ClaimVerdict NotTested(string claim, string why) => new(claim, ClaimOutcome.NotTested, why);

    /// <summary>
    /// C1: each DEQ's test perplexity is at most <see cref="MatchTolerance"/> above its baseline's. A pair is tested only when
    /// both reach <paramref name="targetPerplexity"/> (below it the models are too little trained to compare); the claim holds
    /// when every tested pair holds, and is not tested when no pair is.
    /// </summary>
    public static ClaimVerdict C1(IReadOnlyList<ClaimPair> pairs, double targetPerplexity, bool syntheticData = false)
    {
        if (syntheticData) return NotTested("C1", "the corpus was not found (synthetic data)");
        if (pairs.Count == 0) return NotTested("C1", "no DEQ/baseline pair was run");
        var parts = new List<string>();
        bool anyTested = false, allHold = true;
        foreach (var p in pairs)
        {
            var text = $"{p.Deq} {N(p.DeqValue)} against {p.Baseline} {N(p.BaselineValue)}";
            if (!double.IsFinite(p.DeqValue) || !double.IsFinite(p.BaselineValue) || p.DeqValue > targetPerplexity || p.BaselineValue > targetPerplexity)
            {
                parts.Add($"{text} (not both at or below {N(targetPerplexity, "0")}: untested)");
                continue;
            }
            anyTested = true;
            double rel = p.DeqValue / p.BaselineValue - 1;
            bool holds = rel <= MatchTolerance;
            allHold &= holds;
            parts.Add($"{text} ({Pct(rel)}, {(holds ? "within" : "beyond")} {N(MatchTolerance * 100, "0")}%)");
        }
        var evidence = string.Join("; ", parts);
        return !anyTested ? NotTested("C1", evidence) : new("C1", allHold ? ClaimOutcome.Holds : ClaimOutcome.DoesNotHold, evidence);
    }

    /// <summary>
    /// C2: each DEQ's training memory is at most <see cref="MemoryRatioBound"/> of its baseline's (bytes at the paper's setting).
    /// Not tested when no pair was measured (a non-positive figure counts as unmeasured).
    /// </summary>
    public static ClaimVerdict C2(IReadOnlyList<ClaimPair> pairs)
    {
        var measured = pairs.Where(p => p.DeqValue > 0 && p.BaselineValue > 0).ToList();
        if (measured.Count == 0) return NotTested("C2", "training memory was not measured");
        bool all = true;
        var parts = measured.Select(p =>
        {
            double ratio = p.DeqValue / p.BaselineValue;
            all &= ratio <= MemoryRatioBound;
            return $"{p.Deq} {N(p.DeqValue / 1e6)} MB against {p.Baseline} {N(p.BaselineValue / 1e6)} MB ({N(ratio * 100, "0")}%)";
        }).ToList();
        return new("C2", all ? ClaimOutcome.Holds : ClaimOutcome.DoesNotHold,
            string.Join("; ", parts) + $", bound {N(MemoryRatioBound * 100, "0")}%");
    }

    /// <summary>
    /// C3: at T &gt;= <see cref="CopyMinimumT"/>, the DEQ solves copy memory (<see cref="CopyOutcome.Solved"/>) while the
    /// recurrent models of equal size do not.
    /// </summary>
    public static ClaimVerdict C3(int t, CopyOutcome deq, IReadOnlyList<CopyOutcome> recurrent)
    {
        string D(CopyOutcome o) => $"{o.Model} loss {o.Loss.ToString("0.0E+0", CultureInfo.InvariantCulture)}, accuracy {N(o.Accuracy * 100, "0.00")}%";
        var evidence = $"T = {t}: {string.Join("; ", new[] { deq }.Concat(recurrent).Select(D))}";
        if (t < CopyMinimumT) return NotTested("C3", evidence + $" (T below {CopyMinimumT})");
        if (recurrent.Count == 0) return NotTested("C3", evidence + " (no recurrent model run)");
        bool holds = deq.Solved && recurrent.All(r => !r.Solved);
        var why = !deq.Solved ? " (the DEQ did not solve it)" : holds ? "" : " (a recurrent model solved it too)";
        return new("C3", holds ? ClaimOutcome.Holds : ClaimOutcome.DoesNotHold, evidence + why);
    }

    /// <summary>
    /// C4: every runtime ratio DEQ / baseline lies in (1, <see cref="SlowdownBound"/>]: the DEQ is slower, by a small factor.
    /// Not tested when the models were not trained (<paramref name="trainedSteps"/> 0): untrained solvers take unrepresentative steps.
    /// </summary>
    public static ClaimVerdict C4(IReadOnlyList<RuntimeRatio> ratios, int trainedSteps)
    {
        var evidence = string.Join("; ", ratios.Select(r => $"{r.Comparison} {N(r.Ratio, "0.00")}x"));
        if (ratios.Count == 0) return NotTested("C4", "no ratio was measured");
        if (trainedSteps <= 0) return NotTested("C4", evidence + " (models untrained)");
        bool holds = ratios.All(r => double.IsFinite(r.Ratio) && r.Ratio > 1 && r.Ratio <= SlowdownBound);
        return new("C4", holds ? ClaimOutcome.Holds : ClaimOutcome.DoesNotHold, evidence + $", bound (1, {N(SlowdownBound, "0.0")}]x");
    }

    /// <summary>
    /// f evaluations each trace needs to reach the lowest residual both reach (1-based), or null when a trace is empty.
    /// </summary>
    public static CommonResidual? EvaluationsToCommonResidual(IReadOnlyList<double> broyden, IReadOnlyList<double> plain)
    {
        var b = broyden.Where(double.IsFinite).ToList();
        var p = plain.Where(double.IsFinite).ToList();
        if (b.Count == 0 || p.Count == 0) return null;
        double target = Math.Max(b.Min(), p.Min());
        int First(IReadOnlyList<double> trace) { for (int i = 0; i < trace.Count; i++) if (double.IsFinite(trace[i]) && trace[i] <= target) return i + 1; return int.MaxValue; }
        return new CommonResidual(First(broyden), First(plain), target);
    }

    /// <summary>
    /// C5: on the trained model Broyden reaches the lowest residual both solvers reach in fewer f evaluations than plain
    /// iteration, AND the forward step count grows during training (mean of the last window above the first window after
    /// pretraining). <paramref name="windowEnds"/> and <paramref name="forwardSteps"/> are the left panel's points, each the mean
    /// over the <paramref name="window"/> steps ending there.
    /// </summary>
    public static ClaimVerdict C5(IReadOnlyList<double> broydenTrace, IReadOnlyList<double> plainTrace,
        IReadOnlyList<double> windowEnds, IReadOnlyList<double> forwardSteps, int window, int pretrainSteps, int trainedSteps)
    {
        if (trainedSteps <= 0) return NotTested("C5", "the model was not trained");
        var reach = EvaluationsToCommonResidual(broydenTrace, plainTrace);
        if (reach is not { } r) return NotTested("C5", "no residual trace");
        string E(int k) => k == int.MaxValue ? "never" : k.ToString(CultureInfo.InvariantCulture);
        bool faster = r.Broyden < r.Plain;
        var first = $"to residual {r.Target.ToString("0.0E+0", CultureInfo.InvariantCulture)}: Broyden {E(r.Broyden)} f evaluations, plain iteration {E(r.Plain)}";
        // Windows wholly after pretraining: the step count of the equilibrium phase, not of the unrolled warm-up.
        var after = windowEnds.Select((x, i) => (x, y: forwardSteps[i])).Where(p => p.x - window >= pretrainSteps).ToList();
        if (after.Count < 2) return NotTested("C5", first + "; too few windows after pretraining to see the step count grow");
        bool grows = after[^1].y > after[0].y;
        var second = $"forward Broyden steps {N(after[0].y)} at step {N(after[0].x, "0")} and {N(after[^1].y)} at step {N(after[^1].x, "0")}";
        return new("C5", faster && grows ? ClaimOutcome.Holds : ClaimOutcome.DoesNotHold,
            $"{first} ({(faster ? "fewer" : "not fewer")}); {second} ({(grows ? "grows" : "does not grow")})");
    }

    /// <summary>
    /// C6: every ε below <see cref="SufficientTolerance"/> keeps validation perplexity within <see cref="MatchTolerance"/> of the
    /// tightest ε's, and the loosest ε (at least <see cref="LargeTolerance"/>) raises it by more than <see cref="LargeToleranceHarm"/>.
    /// </summary>
    public static ClaimVerdict C6(IReadOnlyList<TolerancePoint> sweep, int trainedSteps)
    {
        if (trainedSteps <= 0) return NotTested("C6", "the model was not trained");
        var points = sweep.Where(p => double.IsFinite(p.Perplexity)).OrderBy(p => p.Tolerance).ToList();
        if (points.Count < 3) return NotTested("C6", "fewer than three tolerances evaluated");
        var tight = points[0];
        var small = points.Skip(1).Where(p => p.Tolerance < SufficientTolerance).ToList();
        var loose = points[^1];
        if (small.Count == 0 || loose.Tolerance < LargeTolerance)
            return NotTested("C6", $"the sweep needs an ε in ({N(tight.Tolerance, "G3")}, {N(SufficientTolerance, "G3")}) and one at least {N(LargeTolerance, "G3")}");
        var worstSmall = small.MaxBy(p => p.Perplexity)!;
        double smallCost = worstSmall.Perplexity / tight.Perplexity - 1, looseCost = loose.Perplexity / tight.Perplexity - 1;
        bool suffices = smallCost <= MatchTolerance, hurts = looseCost > LargeToleranceHarm;
        var evidence = $"val ppl {N(tight.Perplexity)} at ε {N(tight.Tolerance, "G3")}; worst below ε {N(SufficientTolerance, "G3")}: {N(worstSmall.Perplexity)} at ε {N(worstSmall.Tolerance, "G3")} ({Pct(smallCost)}, {(suffices ? "within" : "beyond")} {N(MatchTolerance * 100, "0")}%); " +
                       $"{N(loose.Perplexity)} at ε {N(loose.Tolerance, "G3")} ({Pct(looseCost)}, {(hurts ? "above" : "not above")} {N(LargeToleranceHarm * 100, "0")}%)";
        return new("C6", suffices && hurts ? ClaimOutcome.Holds : ClaimOutcome.DoesNotHold, evidence);
    }
}
