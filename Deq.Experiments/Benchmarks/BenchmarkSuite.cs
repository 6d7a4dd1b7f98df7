using System.Diagnostics;
using System.Globalization;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using TorchSharp;

namespace Deq.Experiments.Benchmarks;

/// <summary>`deq bench`: memory against depth and iterations, runtime at matched quality, solver overhead, f evaluations, f's GFLOP/s.</summary>
public static class BenchmarkSuite
{
    /// <summary>Sizes of every part (full: about 10 minutes on 2 idle cores, plus about 20 for the memory targets under load; quick: a few minutes).</summary>
    /// <param name="Memory">Memory-against-depth settings.</param>
    /// <param name="SpeedWidth">TrellisNet width of the runtime comparison.</param>
    /// <param name="SpeedSeqLen">Its sequence length.</param>
    /// <param name="SpeedBatch">Its batch.</param>
    /// <param name="Repeats">Timed repeats (median).</param>
    /// <param name="OverheadWidth">Width of the solver-overhead f (the brief's hidden size 512).</param>
    /// <param name="OverheadSeqLen">Its sequence length.</param>
    /// <param name="OverheadBatch">Its batch.</param>
    /// <param name="TrainSteps">Brief training steps before the second f-evaluation count.</param>
    /// <param name="Tol">Relative forward tolerance throughout.</param>
    /// <param name="MaxIter">Solver iteration limit throughout (and the deepest matched stack).</param>
    /// <param name="Targets">The memory targets (<see cref="MemoryTargets"/>).</param>
    public sealed record Settings(MemoryVsDepth.Settings Memory, MemoryTargets.Settings Targets, int SpeedWidth, int SpeedSeqLen, int SpeedBatch, int Repeats,
        int OverheadWidth, int OverheadSeqLen, int OverheadBatch, int TrainSteps, double Tol, int MaxIter)
    {
        /// <summary>The full benchmark.</summary>
        public static Settings Full { get; } = new(MemoryVsDepth.Settings.For(ExperimentScale.Small), MemoryTargets.Settings.Full, 64, 150, 15, 3, 512, 30, 4, 40, 1e-3, 100);

        /// <summary>The quick one (for tests and CI): smaller widths, fewer depths and steps.</summary>
        public static Settings Quick { get; } = new(
            new MemoryVsDepth.Settings(CoreFamily.TrellisNet, 32, 150, 15, [2, 4, 8, 16], [5, 30, 50], 0), MemoryTargets.Settings.Quick, 32, 50, 8, 1, 512, 10, 2, 10, 1e-3, 60);
    }

    /// <summary>Steps each solver runs in the solver-overhead benchmark (the tolerance is unreachable).</summary>
    public const int OverheadSteps = 20;

    /// <summary>The solver-overhead benchmark's results.</summary>
    /// <param name="Costs">Each solver's overhead over f.</param>
    /// <param name="Floor">The floor under Broyden's bookkeeping at the same shape.</param>
    public sealed record SolverOverheadResult(SolverCost[] Costs, FactorBandwidth Floor);

    /// <summary>Each solver's overhead over f at the overhead width (<see cref="OverheadSteps"/> steps, least of
    /// <c>Repeats</c> solves), and the floor under Broyden's bookkeeping at that shape (<see cref="FactorBandwidth"/>).</summary>
    public static SolverOverheadResult SolverOverhead(Settings s)
    {
        using var core = BenchCore.Create(CoreFamily.TrellisNet, s.OverheadWidth, s.OverheadSeqLen, s.OverheadBatch, torch.CPU);
        using var scope = torch.NewDisposeScope();
        var bound = core.Bind();
        var costs = SolverBenchmarks.Overhead(bound.F, bound.Z0, OverheadSteps, s.Repeats);
        int width = checked((int)(bound.Z0.numel() / s.OverheadBatch));
        return new SolverOverheadResult(costs, FactorBandwidth.Measure(s.OverheadBatch, width, OverheadSteps));
    }

    /// <summary>The floor as a printable line.</summary>
    public static string FactorFloor(FactorBandwidth b)
    {
        var one = b.Milliseconds(1);
        return $"steps: one core reads {b.ColdGBps:F0} GB/s from memory, {b.WarmGBps:F0} from cache (dots, four rows a sweep); Broyden's steps in use are " +
            $"{b.FactorMBPerStep:F1} MB a step on average: its one sweep takes {one.FromCache:F2}-{one.FromMemory:F2} ms a step (cache to memory); " +
            $"fresh pages fault in at {b.FreshGBps:F1} GB/s: a step's new slot ({b.NewSlotsMBPerStep:F2} MB) takes {b.NewSlotsMilliseconds:F2} ms";
    }

    /// <summary>Runs everything and returns the JSON report and a printable table.</summary>
    public static (JsonObject Json, string Table) Run(Settings s, string scaleName)
    {
        var clock = Stopwatch.StartNew();
        // One thread: on a shared, oversubscribed machine OpenMP barriers stall for whole time slices and
        // timings become noise; single-threaded ratios are stable (absolute GFLOP/s are per core).
        torch.set_num_threads(1);
        var run = RunInfo.Capture(ExperimentScale.Small);
        var json = new JsonObject
        {
            ["scale"] = scaleName, ["machine"] = run.Machine, ["device"] = run.Device,
            ["date"] = run.Date.ToString("yyyy-MM-dd HH:mm 'UTC'", CultureInfo.InvariantCulture), ["commit"] = run.Commit,
            ["memory_method"] = TrainingMemory.CpuMethod, ["threads"] = 1, ["allocator"] = Deq.Native.FreedMemory.Status,
        };
        var table = new StringBuilder();

        // Memory: fresh processes.
        var mem = MemoryVsDepth.Run(s.Memory);
        var at5 = mem.Deq.FirstOrDefault(m => m.Config.Iterations == 5);
        var at50 = mem.Deq.FirstOrDefault(m => m.Config.Iterations == 50);
        json["memory_setting"] = $"DEQ-TrellisNet core, width (h) {s.Memory.Width}, seq {s.Memory.SeqLen}, batch {s.Memory.Batch}, float32; DEQ: the lean training default, N steps each; limited: Broyden pair, memory {s.Memory.LimitedBroydenMemory}";
        json["memory_reduction_vs_unrolled_L16"] = Num(mem.ReductionAt(16));
        json["memory_reduction_vs_unrolled_L64"] = Num(mem.ReductionAt(64));
        json["deq_memory_growth_iters_5_to_50"] = at5 is not null && at50 is not null ? Num((double)at50.PeakBytes / at5.PeakBytes) : null;
        json["memory_series"] = new JsonObject
        {
            ["unrolled"] = Array(mem.Unrolled.Select(m => Row(("L", m.Config.Iterations), ("peak_mib", m.PeakMiB), ("copies_of_z", m.PeakInStates)))),
            ["deq"] = Array(mem.Deq.Select(m => Row(("N", m.Config.Iterations), ("peak_mib", m.PeakMiB), ("copies_of_z", m.PeakInStates)))),
            ["deq_broyden_memory_limited"] = mem.DeqLimited is { } lim
                ? Row(("N", lim.Config.Iterations), ("broyden_memory", lim.Config.BroydenMemory), ("peak_mib", lim.PeakMiB), ("copies_of_z", lim.PeakInStates),
                      ("reduction_vs_unrolled_L16", mem.Unrolled.FirstOrDefault(u => u.Config.Iterations == 16) is { } u16 ? 1 - (double)lim.PeakBytes / u16.PeakBytes : double.NaN))
                : null,
        };
        table.AppendLine($"Training memory, one step (DEQ-TrellisNet core, h {s.Memory.Width}, seq {s.Memory.SeqLen}, batch {s.Memory.Batch}; fresh process each):");
        foreach (var m in mem.Unrolled) table.AppendLine($"  unrolled L={m.Config.Iterations,-3} {m.PeakMiB,9:F1} MiB  ({m.PeakInStates,6:F1} x z)");
        foreach (var m in mem.Deq) table.AppendLine($"  DEQ N={m.Config.Iterations,-3}      {m.PeakMiB,9:F1} MiB  ({m.PeakInStates,6:F1} x z)");
        if (mem.DeqLimited is { } l) table.AppendLine($"  DEQ N=30 m={l.Config.BroydenMemory,-2}   {l.PeakMiB,9:F1} MiB  ({l.PeakInStates,6:F1} x z)");

        json["memory_targets"] = MemoryTargets.Run(s.Targets, table);

        // Runtime at matched quality.
        Progress.Report("bench: runtime at matched quality");
        RuntimeComparison rt;
        using (var core = BenchCore.Create(CoreFamily.TrellisNet, s.SpeedWidth, s.SpeedSeqLen, s.SpeedBatch, torch.CPU))
            rt = RuntimeComparison.Measure(core, s.Tol, s.MaxIter, s.MaxIter, s.Repeats);
        json["train_step_ratio_deq_over_unrolled"] = Num(rt.TrainRatio);
        json["inference_ratio_deq_over_unrolled"] = Num(rt.InferenceRatio);
        json["runtime_definition"] = $"matched quality: Broyden to relative tolerance {s.Tol:G} reached residual {rt.DeqResidual:E2} in {rt.DeqForwardSteps} steps; " +
            $"plain iteration needed {rt.MatchedDepth} applications of f to reach it{(rt.DepthReachedResidual ? "" : " (did NOT reach it: capped)")}, so the unrolled stack has L = {rt.MatchedDepth}. " +
            $"Training step = forward + backward (DEQ: Broyden adjoint to tol/10); inference = forward, no grad. DEQ-TrellisNet core h {s.SpeedWidth}, seq {s.SpeedSeqLen}, batch {s.SpeedBatch}; median of {s.Repeats}.";
        json["runtime"] = Row(("deq_forward_steps", rt.DeqForwardSteps), ("deq_residual", rt.DeqResidual), ("matched_depth", rt.MatchedDepth),
            ("deq_train_s", rt.DeqTrainSeconds), ("unrolled_train_s", rt.UnrolledTrainSeconds), ("deq_inference_s", rt.DeqInferenceSeconds), ("unrolled_inference_s", rt.UnrolledInferenceSeconds));
        table.AppendLine($"Runtime at matched quality (Broyden {rt.DeqForwardSteps} steps to rel {rt.DeqResidual:E1} vs unrolled L={rt.MatchedDepth}): " +
            $"train {rt.TrainRatio:F2}x ({rt.DeqTrainSeconds:F2} s / {rt.UnrolledTrainSeconds:F2} s), inference {rt.InferenceRatio:F2}x ({rt.DeqInferenceSeconds:F2} s / {rt.UnrolledInferenceSeconds:F2} s)");

        // Solver overhead at hidden size 512.
        Progress.Report("bench: solver overhead");
        var (overhead, floor) = SolverOverhead(s);
        json["solver_overhead_setting"] = $"DEQ-TrellisNet core h {s.OverheadWidth}, seq {s.OverheadSeqLen}, batch {s.OverheadBatch}; {OverheadSteps} steps each (tolerance unreachable); (solve time - time inside f) / time inside f, least of {s.Repeats} solves";
        json["solver_overhead_fraction"] = new JsonObject(overhead.Select(c => KeyValuePair.Create(c.Solver, (JsonNode?)Num(c.OverheadFraction))));
        table.AppendLine("Solver overhead over f (h " + s.OverheadWidth + "): " + string.Join(", ", overhead.Select(c => $"{c.Solver} {c.OverheadFraction:P1} ({c.Seconds / c.Steps * 1000:F1} ms/step, f {c.FSeconds / c.Evaluations * 1000:F1} ms)")));
        var one = floor.Milliseconds(1);
        json["solver_overhead_factor_floor"] = Row(("read_gbps_from_memory", floor.ColdGBps), ("read_gbps_from_cache", floor.WarmGBps),
            ("broyden_steps_mb_per_step", floor.FactorMBPerStep), ("one_sweep_ms_from_cache", one.FromCache), ("one_sweep_ms_from_memory", one.FromMemory),
            ("fresh_pages_gbps", floor.FreshGBps), ("new_slots_mb_per_step", floor.NewSlotsMBPerStep), ("new_slots_ms", floor.NewSlotsMilliseconds));
        table.AppendLine("  " + FactorFloor(floor));

        // The toy of issue 14 (a peer library's own benchmark): per-iteration overhead over a cheap f.
        Progress.Report("bench: toy DEQ overhead");
        var (toy, boundF, perCallF) = SolverBenchmarks.Toy(30, Math.Max(5, 5 * s.Repeats));
        json["toy_setting"] = "f(z) = tanh(W z + U x), D 128, batch 64, float32, weight norm on W computed once per Bind; 30 steps each; (time per step - f time) / f time, least of the repeats";
        json["toy_overhead_over_f"] = new JsonObject(toy.Select(c => KeyValuePair.Create(c.Solver, (JsonNode?)Num(c.OverheadFraction))));
        json["toy_f_us"] = Row(("weight_norm_bound_once", boundF), ("weight_norm_per_call", perCallF));
        table.AppendLine("Toy (D 128, batch 64) overhead over f: " + string.Join(", ", toy.Select(c => $"{c.Solver} {c.OverheadFraction:F2}x ({c.Seconds / c.Steps * 1e6:F0} us/step)")) +
            $"; f {boundF:F0} us with W bound once, {perCallF:F0} us with weight norm per call");

        // f evaluations to tolerance, untrained and briefly trained.
        Progress.Report("bench: f evaluations to tolerance");
        var (model, tokens) = SolverBenchmarks.BrieflyTrained(s.SpeedWidth, s.SpeedSeqLen, s.SpeedBatch, s.TrainSteps);
        SolverCost[] trained;
        using (torch.NewDisposeScope())
        {
            var cell = model.Bind(tokens, null);
            trained = SolverBenchmarks.Costs(cell.F, cell.Z0, s.Tol, s.MaxIter, warmUp: false);
        }
        SolverCost[] untrained;
        using (var core = BenchCore.Create(CoreFamily.TrellisNet, s.SpeedWidth, s.SpeedSeqLen, s.SpeedBatch, torch.CPU))
        using (torch.NewDisposeScope())
        {
            var bound = core.Bind();
            untrained = SolverBenchmarks.Costs(bound.F, bound.Z0, s.Tol, s.MaxIter, warmUp: false);
        }
        model.Dispose();
        JsonObject Evals(SolverCost[] cs) => new(cs.Select(c => KeyValuePair.Create(c.Solver, (JsonNode?)Row(("f_evals", c.Evaluations), ("converged", c.Converged), ("rel_residual", c.RelResidual)))));
        json["f_evals_setting"] = $"relative tolerance {s.Tol:G}, at most {s.MaxIter} steps; DEQ-TrellisNet h {s.SpeedWidth}, seq {s.SpeedSeqLen}, batch {s.SpeedBatch}; trained = a DEQ-TrellisNet LM after {s.TrainSteps} Adam steps on a synthetic stream";
        json["f_evals_to_tolerance"] = new JsonObject { ["untrained"] = Evals(untrained), ["trained"] = Evals(trained) };
        foreach (var (name, cs) in new[] { ("untrained", untrained), ("trained", trained) })
            table.AppendLine($"f evals to rel {s.Tol:G} ({name}): " + string.Join(", ", cs.Select(c => $"{c.Solver} {c.Evaluations}{(c.Converged ? "" : " (not converged, " + c.RelResidual.ToString("E1", CultureInfo.InvariantCulture) + ")")}")));

        // GFLOP/s of f against a matmul of the same shapes.
        Progress.Report("bench: f GFLOP/s");
        var (fRate, mRate) = SolverBenchmarks.Gflops(s.OverheadWidth, s.OverheadSeqLen * 5, s.OverheadBatch, 5);
        json["f_gflops"] = Num(fRate);
        json["matmul_gflops"] = Num(mRate);
        json["f_gflops_fraction_of_matmul"] = Num(fRate / mRate);
        table.AppendLine($"f GFLOP/s (conv counted as matmul, h {s.OverheadWidth}): {fRate:F1} vs matmul {mRate:F1} = {fRate / mRate:P0}");

        json["targets"] = Row(("memory_reduction_vs_unrolled_L16", ">= 0.88"), ("deq_memory_growth_iters_5_to_50", "<= 1.05"),
            ("train_step_ratio_deq_over_unrolled", "<= 2.8 (paper 2.4-2.8)"), ("inference_ratio_deq_over_unrolled", "<= 1.8 (paper 1.6-1.8)"), ("solver_overhead_fraction", "<= 0.10 (broyden)"),
            ("toy_overhead_over_f", "anderson <= 1.5, broyden <= 2.5, forward <= 0.3"));
        json["wall_seconds"] = Num(clock.Elapsed.TotalSeconds);
        table.AppendLine($"Memory method: {TrainingMemory.CpuMethod}.");
        table.AppendLine($"{run.Machine}, {run.Device}, commit {run.Commit}, wall {clock.Elapsed.TotalMinutes:F1} min.");
        return (json, table.ToString());
    }

    /// <summary>
    /// Only the memory targets (<paramref name="paperWidth"/>: only the paper's PTB width), as a section to merge into
    /// benchmarks.json under <see cref="SectionName"/>, stamped with machine, commit and date.
    /// </summary>
    public static (string Key, JsonObject Json, string Table) RunMemorySection(Settings s, bool paperWidth)
    {
        var clock = Stopwatch.StartNew();
        torch.set_num_threads(1);
        var run = RunInfo.Capture(ExperimentScale.Small);
        var table = new StringBuilder();
        var json = paperWidth ? MemoryTargets.PaperWidth(s.Targets, table) : MemoryTargets.Run(s.Targets, table);
        json["machine"] = run.Machine;
        json["commit"] = run.Commit;
        json["date"] = run.Date.ToString("yyyy-MM-dd HH:mm 'UTC'", CultureInfo.InvariantCulture);
        json["memory_method"] = TrainingMemory.CpuMethod;
        json["wall_seconds"] = Num(clock.Elapsed.TotalSeconds);
        table.AppendLine($"{run.Machine}, {run.Device}, commit {run.Commit}, wall {clock.Elapsed.TotalMinutes:F1} min.");
        return (SectionName(paperWidth), json, table.ToString());
    }

    /// <summary>The benchmarks.json key of a memory section.</summary>
    public static string SectionName(bool paperWidth) => paperWidth ? "memory_paper_width" : "memory_targets";

    /// <summary>Serialises the report, indented.</summary>
    public static string ToText(JsonObject json) => json.ToJsonString(new JsonSerializerOptions { WriteIndented = true });

    static JsonNode? Num(double v) => double.IsFinite(v) ? JsonValue.Create(Math.Round(v, 4)) : null;

    static JsonArray Array(IEnumerable<JsonObject> rows) => new([.. rows]);

    static JsonObject Row(params (string Key, object Value)[] cells) => new(cells.Select(c => KeyValuePair.Create(c.Key, c.Value switch
    {
        double d => Num(d),
        int i => (JsonNode?)JsonValue.Create(i),
        bool b => JsonValue.Create(b),
        _ => JsonValue.Create(c.Value.ToString()),
    })));
}
