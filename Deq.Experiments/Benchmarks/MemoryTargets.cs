using System.Diagnostics;
using System.Globalization;
using System.Text;
using System.Text.Json.Nodes;
using Deq.Implicit;
using Deq.Solvers;
using Deq.Training;
using TorchSharp;

namespace Deq.Experiments.Benchmarks;

/// <summary>
/// The memory targets of issue 11, each peak the minimum of <see cref="Settings.Runs"/> fresh-process probes
/// (no allocator variable set): the TrellisNet core's DEQ against the unrolled stack and flat in N, the
/// Transformer core's DEQ against its stack, the memory ledgers of both
/// cores beside their stacks', and the speed of a training step at the lean default against Broyden's.
/// </summary>
public static class MemoryTargets
{
    /// <summary>Sizes.</summary>
    /// <param name="Width">TrellisNet h and Transformer d_model (issue: 256).</param>
    /// <param name="SeqLen">Sequence length (150).</param>
    /// <param name="Batch">Batch (15).</param>
    /// <param name="Runs">Fresh-process probes per figure; the minimum counts (3).</param>
    /// <param name="Shallow">DEQ N for the flat-in-N figure (5).</param>
    /// <param name="Reference">DEQ N of the targets (30).</param>
    /// <param name="Deep">DEQ N for the flat-in-N figure (100).</param>
    /// <param name="Stack">Stack depth compared with (16).</param>
    /// <param name="DeepStack">The deep stack (60, the paper's TrellisNet).</param>
    /// <param name="PaperWidth">TrellisNet h of the paper's PTB model (1400), for <see cref="MemoryTargets.PaperWidth"/>.</param>
    /// <param name="SpeedRepeats">Timed training steps per solver pair (median).</param>
    public sealed record Settings(int Width, int SeqLen, int Batch, int Runs, int Shallow, int Reference, int Deep, int Stack, int DeepStack,
        int PaperWidth, int SpeedRepeats)
    {
        /// <summary>The settings.</summary>
        public static Settings Full { get; } = new(256, 150, 15, 3, 5, 30, 100, 16, 60, 1400, 3);

        /// <summary>Tiny sizes, one run each (for tests and CI).</summary>
        public static Settings Quick { get; } = new(16, 30, 4, 1, 2, 5, 10, 4, 8, 32, 1);
    }

    /// <summary>Measures everything, appending lines to <paramref name="table"/>; returns the JSON section.</summary>
    public static JsonObject Run(Settings s, StringBuilder table)
    {
        var json = new JsonObject
        {
            ["setting"] = $"seq {s.SeqLen}, batch {s.Batch}, float32, CPU, one thread; DEQ: the training default " +
                $"({EquilibriumOptions.LeanForward().Describe()} forward, {EquilibriumOptions.LeanAdjointSolve().Describe()} adjoint), every step taken; each peak the minimum of {s.Runs} fresh processes",
            ["load_average_before"] = LoadAverage(),
        };
        MemoryMeasurement Min(MemoryProbeConfig c)
        {
            var m = TrainingMemory.MinimumOfFreshProcesses(c, s.Runs);
            Progress.Report($"memory: {c.Label}: {m.PeakMiB:F1} MiB ({m.PeakInStates:F1} x z), min of {s.Runs}");
            return m;
        }
        var trellis = new MemoryProbeConfig(CoreFamily.TrellisNet, Width: s.Width, SeqLen: s.SeqLen, Batch: s.Batch);
        var transformer = trellis with { Family = CoreFamily.Transformer };
        MemoryProbeConfig Deq(MemoryProbeConfig c, int n) => c with { Mode = ProbeMode.Deq, Iterations = n };
        MemoryProbeConfig Stack(MemoryProbeConfig c, int l) => c with { Mode = ProbeMode.Unrolled, Iterations = l };

        var n5 = Min(Deq(trellis, s.Shallow));
        var n30 = Min(Deq(trellis, s.Reference));
        var n100 = Min(Deq(trellis, s.Deep));
        var l16 = Min(Stack(trellis, s.Stack));
        var l60 = Min(Stack(trellis, s.DeepStack));
        json["trellisnet"] = Row(("width_h", s.Width), ("deq_peak_mib", n30.PeakMiB), ("deq_copies_of_z", n30.PeakInStates),
            ("stack_peak_mib", l16.PeakMiB), ("deep_stack_peak_mib", l60.PeakMiB),
            ("reduction_vs_stack", 1 - (double)n30.PeakBytes / l16.PeakBytes), ("reduction_vs_deep_stack", 1 - (double)n30.PeakBytes / l60.PeakBytes),
            ("deq_shallow_peak_mib", n5.PeakMiB), ("deq_deep_peak_mib", n100.PeakMiB), ("deep_over_shallow", (double)n100.PeakBytes / n5.PeakBytes),
            ("N", s.Reference), ("stack_L", s.Stack), ("deep_stack_L", s.DeepStack), ("shallow_N", s.Shallow), ("deep_N", s.Deep));
        table.AppendLine($"Memory targets (min of {s.Runs} fresh processes; seq {s.SeqLen}, batch {s.Batch}):");
        table.AppendLine($"  TrellisNet h {s.Width}: DEQ N={s.Reference} {n30.PeakMiB:F1} MiB ({n30.PeakInStates:F1} x z); L={s.Stack} {l16.PeakMiB:F1} MiB " +
            $"({1 - (double)n30.PeakBytes / l16.PeakBytes:P1} less); L={s.DeepStack} {l60.PeakMiB:F1} MiB ({1 - (double)n30.PeakBytes / l60.PeakBytes:P1} less)");
        table.AppendLine($"  flat in N: N={s.Shallow} {n5.PeakMiB:F1} MiB, N={s.Deep} {n100.PeakMiB:F1} MiB (x{(double)n100.PeakBytes / n5.PeakBytes:F3})");

        var t30 = Min(Deq(transformer, s.Reference));
        var t16 = Min(Stack(transformer, s.Stack));
        json["transformer"] = Row(("d_model", s.Width), ("deq_peak_mib", t30.PeakMiB), ("deq_copies_of_z", t30.PeakInStates),
            ("stack_peak_mib", t16.PeakMiB), ("stack_copies_of_z", t16.PeakInStates), ("reduction_vs_stack", 1 - (double)t30.PeakBytes / t16.PeakBytes),
            ("N", s.Reference), ("stack_L", s.Stack));
        table.AppendLine($"  Transformer d {s.Width}: DEQ N={s.Reference} {t30.PeakMiB:F1} MiB ({t30.PeakInStates:F1} x z); L={s.Stack} {t16.PeakMiB:F1} MiB " +
            $"({1 - (double)t30.PeakBytes / t16.PeakBytes:P1} less)");

        var ledgers = new JsonObject();
        table.AppendLine($"Memory ledgers of one step (one fresh process each; MiB / copies of z):");
        foreach (var c in new[] { Deq(trellis, s.Reference), Stack(trellis, s.Stack), Deq(transformer, s.Reference), Stack(transformer, s.Stack) })
        {
            var l = TrainingMemory.LedgerInFreshProcess(c);
            ledgers[c.Label] = LedgerJson(l);
            table.AppendLine($"  {c.Label}: " + string.Join(", ", l.Phases.Select(p => $"{p.Key} {p.Value / 1048576.0:F1}/{l.Copies(p.Value):F1}")) +
                $"; peak {l.PeakBytes / 1048576.0:F1}/{l.Copies(l.PeakBytes):F1}");
        }
        json["ledgers"] = ledgers;

        json["speed"] = Speed(trellis, s.SpeedRepeats, table);
        json["load_average_after"] = LoadAverage();
        json["targets"] = Row(("trellisnet_deq_copies_of_z", "<= 15"), ("trellisnet_reduction_vs_stack", ">= 0.85"), ("trellisnet_reduction_vs_deep_stack", ">= 0.95"),
            ("deep_over_shallow", "<= 1.03"), ("transformer_reduction_vs_stack", ">= 0.80"),
            ("lean_over_broyden_step", "<= 1.2"));
        return json;
    }

    /// <summary>
    /// The paper's PTB setting: the TrellisNet core at h <see cref="Settings.PaperWidth"/>, the DEQ at N = Reference against the
    /// DeepStack-layer stack, one fresh process each (the stack takes about 10 GB and tens of minutes on one CPU thread).
    /// </summary>
    public static JsonObject PaperWidth(Settings s, StringBuilder table)
    {
        if (s.PaperWidth < 4) throw new ArgumentOutOfRangeException(nameof(s), s.PaperWidth, "MemoryTargets.PaperWidth: Settings.PaperWidth must be at least 4.");
        var paper = new MemoryProbeConfig(CoreFamily.TrellisNet, Width: s.PaperWidth, SeqLen: s.SeqLen, Batch: s.Batch);
        var load = LoadAverage();
        var deq = TrainingMemory.MeasureInFreshProcess(paper with { Iterations = s.Reference }, TimeSpan.FromHours(2));
        var stack = TrainingMemory.MeasureInFreshProcess(paper with { Mode = ProbeMode.Unrolled, Iterations = s.DeepStack }, TimeSpan.FromHours(2));
        table.AppendLine($"Paper's PTB setting, TrellisNet h {s.PaperWidth}, seq {s.SeqLen}, batch {s.Batch} (one fresh process each): DEQ N={s.Reference} {deq.PeakMiB:F0} MiB " +
            $"({deq.PeakInStates:F1} x z) vs L={s.DeepStack} {stack.PeakMiB:F0} MiB ({stack.PeakInStates:F1} x z) = {(double)deq.PeakBytes / stack.PeakBytes:P1}");
        return Row(("width_h", s.PaperWidth), ("runs", 1), ("deq_peak_mib", deq.PeakMiB), ("deq_copies_of_z", deq.PeakInStates), ("deq_step_s", deq.StepSeconds),
            ("deep_stack_peak_mib", stack.PeakMiB), ("deep_stack_copies_of_z", stack.PeakInStates), ("deep_stack_step_s", stack.StepSeconds),
            ("deq_over_deep_stack", (double)deq.PeakBytes / stack.PeakBytes), ("N", s.Reference), ("deep_stack_L", s.DeepStack),
            ("target", "<= 0.10 (paper 0.14)"), ("load_average_before", load));
    }

    /// <summary>A ledger as JSON: every phase in MiB and copies of z, and the peak.</summary>
    public static JsonObject LedgerJson(MemoryLedger l)
    {
        var o = new JsonObject();
        foreach (var p in l.Phases.Append(new("step peak", l.PeakBytes)))
            o[p.Key] = Row(("mib", p.Value / 1048576.0), ("copies_of_z", l.Copies(p.Value)));
        o["state_mib"] = Num(l.StateBytes / 1048576.0);
        return o;
    }

    // One training step (forward + backward) at the lean default against the Broyden pair (m = 30), both to the training
    // tolerances (forward rel 1e-4, adjoint 1e-5, at most 50 steps); the median of repeats after a warm-up.
    static JsonObject Speed(MemoryProbeConfig c, int repeats, StringBuilder table)
    {
        const double tol = 1e-4;
        const int maxIter = 50;
        torch.set_num_threads(1);
        using var core = BenchCore.Create(c.Family, c.Width, c.SeqLen, c.Batch, torch.CPU, c.Seed);
        core.Module.train();
        var lean = new EquilibriumOptions(EquilibriumOptions.LeanForward(maxIter, tol), Adjoint.Implicit(EquilibriumOptions.LeanAdjointSolve(maxIter, tol / 10)));
        var broyden = new EquilibriumOptions(Broyden.Create(new SolverOptions(MaxIter: maxIter, Tol: tol)),
            Adjoint.Implicit(Broyden.Create(new SolverOptions(MaxIter: maxIter, Tol: tol / 10))));
        (double Seconds, double Forward, double Backward, int FSteps, int BSteps) Time(EquilibriumOptions o)
        {
            var runs = new List<(double, double, double, int, int)>();
            for (int i = 0; i <= repeats; i++)
            {
                using var scope = torch.NewDisposeScope();
                BackwardReport? report = null;
                var clock = Stopwatch.StartNew();
                var bound = core.Bind();
                var eq = Equilibrium.Solve(bound.F, bound.Z0, o with { OnBackward = r => report = r });
                bound.ReleaseInjection();
                Equilibrium.Backward(eq.Z.square().mean());
                var seconds = clock.Elapsed.TotalSeconds;
                if (i > 0) runs.Add((seconds, eq.Forward.RelLowest, report?.Result.RelLowest ?? double.NaN, eq.Forward.Steps, report?.Result.Steps ?? 0));
            }
            return runs.OrderBy(r => r.Item1).ElementAt(runs.Count / 2);
        }
        var load = LoadAverage();
        var b = Time(broyden);
        var l = Time(lean);
        table.AppendLine($"Training step, lean default vs Broyden m=30 (TrellisNet h {c.Width}, forward rel {tol:G}, adjoint {tol / 10:G}): " +
            $"{l.Seconds:F2} s / {b.Seconds:F2} s = x{l.Seconds / b.Seconds:F2}; lean {l.FSteps}+{l.BSteps} steps (rel {l.Forward:E1}, {l.Backward:E1}), " +
            $"Broyden {b.FSteps}+{b.BSteps} (rel {b.Forward:E1}, {b.Backward:E1}); load average {load}");
        return Row(("lean_over_broyden_step", l.Seconds / b.Seconds), ("lean_s", l.Seconds), ("broyden_s", b.Seconds),
            ("lean_forward_steps", l.FSteps), ("lean_backward_steps", l.BSteps), ("lean_forward_rel", l.Forward), ("lean_backward_rel", l.Backward),
            ("broyden_forward_steps", b.FSteps), ("broyden_backward_steps", b.BSteps), ("broyden_forward_rel", b.Forward), ("broyden_backward_rel", b.Backward),
            ("setting", $"TrellisNet core h {c.Width}, seq {c.SeqLen}, batch {c.Batch}; forward rel {tol:G}, adjoint rel {tol / 10:G}, at most {maxIter} steps; median of {repeats}"),
            ("load_average", load));
    }

    /// <summary>The 1, 5 and 15 minute load averages (as `uptime` shows them), or "unknown".</summary>
    public static string LoadAverage()
    {
        try { return string.Join(" ", File.ReadAllText("/proc/loadavg").Split(' ').Take(3)); }
        catch (IOException) { return "unknown"; }
    }

    static JsonNode? Num(double v) => double.IsFinite(v) ? JsonValue.Create(Math.Round(v, 4)) : null;

    static JsonObject Row(params (string Key, object Value)[] cells) => new(cells.Select(c => KeyValuePair.Create(c.Key, c.Value switch
    {
        double d => Num(d),
        int i => (JsonNode?)JsonValue.Create(i),
        _ => JsonValue.Create(Convert.ToString(c.Value, CultureInfo.InvariantCulture)),
    })));
}
