using System.Diagnostics;

namespace Deq.Experiments.Benchmarks;

/// <summary>
/// Training memory against depth: the DEQ (the lean training default, at several iteration counts) against the weight-tied
/// stack unrolled L times, same f, each configuration in a fresh process (<see cref="TrainingMemory"/>).
/// </summary>
public static class MemoryVsDepth
{
    /// <summary>Sizes per scale.</summary>
    /// <param name="Family">The core.</param>
    /// <param name="Width">Width (see <see cref="MemoryProbeConfig.Width"/>).</param>
    /// <param name="SeqLen">Sequence length (paper: 150).</param>
    /// <param name="Batch">Batch (paper: 15).</param>
    /// <param name="Depths">Unrolled depths L.</param>
    /// <param name="DeqIterations">Iteration counts N for the DEQ (forward and backward, the lean default).</param>
    /// <param name="LimitedBroydenMemory">Also measure the DEQ at N = 30 with the Broyden pair at this memory (0: skip).</param>
    public sealed record Settings(CoreFamily Family, int Width, int SeqLen, int Batch, int[] Depths, int[] DeqIterations, int LimitedBroydenMemory)
    {
        /// <summary>The preset for a scale. Paper: the PTB DEQ-TrellisNet width (h 1400) at seq 150, batch 15 (a GPU-sized run; the probe is CPU-only).</summary>
        public static Settings For(ExperimentScale scale) => scale switch
        {
            ExperimentScale.Smoke => new(CoreFamily.TrellisNet, 16, 30, 4, [2, 8], [5, 30], 0),
            ExperimentScale.Small => new(CoreFamily.TrellisNet, 64, 150, 15, [2, 4, 8, 16, 32, 64], [5, 30, 50], 8),
            ExperimentScale.Large => new(CoreFamily.TrellisNet, 256, 150, 15, [2, 4, 8, 16, 32, 64], [5, 10, 30, 50], 8),
            _ => new(CoreFamily.TrellisNet, 1400, 150, 15, [2, 4, 8, 16, 32, 64], [5, 10, 30, 50], 8),
        };

        // the arrays' values, not "System.Int32[]", when a notebook prints the settings
        bool PrintMembers(System.Text.StringBuilder b)
        {
            b.Append($"Family = {Family}, Width = {Width}, SeqLen = {SeqLen}, Batch = {Batch}, ");
            b.Append($"Depths = [{string.Join(", ", Depths)}], DeqIterations = [{string.Join(", ", DeqIterations)}], LimitedBroydenMemory = {LimitedBroydenMemory}");
            return true;
        }
    }

    /// <summary>The measurements, unrolled then DEQ, and the wall time.</summary>
    /// <param name="Settings">What ran.</param>
    /// <param name="Unrolled">One per depth.</param>
    /// <param name="Deq">One per iteration count (the lean default).</param>
    /// <param name="DeqLimited">The DEQ at N = 30 with the Broyden pair at the limited memory, or null.</param>
    /// <param name="Wall">Wall time.</param>
    public sealed record Result(Settings Settings, IReadOnlyList<MemoryMeasurement> Unrolled, IReadOnlyList<MemoryMeasurement> Deq, MemoryMeasurement? DeqLimited, TimeSpan Wall)
    {
        /// <summary>The DEQ at N = 30 (or the largest N below it).</summary>
        public MemoryMeasurement DeqReference => Deq.Where(m => m.Config.Iterations <= 30).MaxBy(m => m.Config.Iterations) ?? Deq[0];

        /// <summary>1 - peak(DEQ N=30) / peak(unrolled L), NaN where L was not measured.</summary>
        public double ReductionAt(int depth) =>
            Unrolled.FirstOrDefault(m => m.Config.Iterations == depth) is { } u ? 1 - (double)DeqReference.PeakBytes / u.PeakBytes : double.NaN;
    }

    /// <summary>Runs every configuration in its own process.</summary>
    public static Result Run(Settings s)
    {
        var clock = Stopwatch.StartNew();
        var baseConfig = new MemoryProbeConfig(Family: s.Family, Width: s.Width, SeqLen: s.SeqLen, Batch: s.Batch);
        MemoryMeasurement Measure(MemoryProbeConfig c)
        {
            var m = TrainingMemory.MeasureInFreshProcess(c);
            Progress.Report($"memory: {c.Label}: {m.PeakMiB:F1} MiB ({m.PeakInStates:F0} x z), step {m.StepSeconds:F1} s");
            return m;
        }
        var unrolled = s.Depths.Select(l => Measure(baseConfig with { Mode = ProbeMode.Unrolled, Iterations = l })).ToArray();
        var deq = s.DeqIterations.Select(n => Measure(baseConfig with { Mode = ProbeMode.Deq, Iterations = n })).ToArray();
        var limited = s.LimitedBroydenMemory > 0 ? Measure(baseConfig with { Mode = ProbeMode.Deq, Iterations = 30, Solvers = ProbeSolvers.Broyden, BroydenMemory = s.LimitedBroydenMemory }) : null;
        return new Result(s, unrolled, deq, limited, clock.Elapsed);
    }
}
