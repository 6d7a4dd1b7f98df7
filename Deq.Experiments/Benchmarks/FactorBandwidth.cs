using System.Diagnostics;
using TorchSharp;

namespace Deq.Experiments.Benchmarks;

/// <summary>
/// The floor under Broyden's bookkeeping at the solver-overhead shape: how fast one core reads float32 rows with the
/// C# steps' dot kernel (dot products against one row, four rows per sweep), from memory and from cache, and what
/// reading the slots in use costs at that rate; and what the new slot a step writes costs to fault in, since the slots
/// are fresh memory each solve (<see cref="Deq.Native.FreedMemory"/>). A step's reads and new slot cannot beat it, so it
/// tells whether a target in fractions of f is within reach on the machine at hand. Broyden on the CPU keeps its steps
/// (Deq.Solvers.BroydenSteps): one sweep reads each slot in use once, and a step writes one new slot.
/// </summary>
/// <param name="ColdGBps">GB/s when the rows come from memory (a buffer larger than the last-level cache written in between).</param>
/// <param name="WarmGBps">GB/s when they are in cache.</param>
/// <param name="FactorMBPerStep">MB of the slots a step's sweep reads, averaged over the solve's Broyden steps (the k-th of
/// n reads k + 1 slots, the last none: the same average as 0 .. n - 1).</param>
/// <param name="FreshGBps">GB/s at which fresh factor memory is faulted in: a first write's time less a second's.</param>
/// <param name="NewSlotsMBPerStep">MB of new slots a step writes (one row per element: its next step).</param>
public sealed record FactorBandwidth(double ColdGBps, double WarmGBps, double FactorMBPerStep, double FreshGBps, double NewSlotsMBPerStep)
{
    /// <summary>Milliseconds a step spends reading the slots in use <paramref name="passes"/> times, from cache (the least
    /// possible) and from memory. A real step sits between: f evicts part of them.</summary>
    public (double FromCache, double FromMemory) Milliseconds(int passes) => (passes * FactorMBPerStep / WarmGBps, passes * FactorMBPerStep / ColdGBps);

    /// <summary>Milliseconds a step spends faulting in its new slot.</summary>
    public double NewSlotsMilliseconds => NewSlotsMBPerStep / FreshGBps;

    /// <summary>Measures at Broyden's shape: <paramref name="batch"/> rows of <paramref name="width"/> floats per slot,
    /// <paramref name="steps"/> recorded steps (so steps - 1 Broyden steps, the k-th with k slots in use).</summary>
    public static FactorBandwidth Measure(int batch, int width, int steps, int repeats = 30)
    {
        double slots = Enumerable.Range(0, steps - 1).Average();
        int rows = Math.Max(4, (int)Math.Round(slots * batch)) / 4 * 4;   // one pass: every element's slots in use
        var factors = new float[(long)rows * width];
        var x = new float[width];
        for (int i = 0; i < factors.Length; i++) factors[i] = i % 7 * 0.25f;
        Array.Fill(x, 0.5f);
        var evict = new float[16 << 20];   // 64 MiB: over the L3 this runs on (32 MiB here)
        double Best(bool cold)
        {
            double best = double.PositiveInfinity;
            for (int r = 0; r < repeats; r++)
            {
                if (cold) for (int i = 0; i < evict.Length; i += 16) evict[i] += 1;
                var clock = Stopwatch.StartNew();
                Sink += Dots(factors, x, rows, width);
                best = Math.Min(best, clock.Elapsed.TotalSeconds);
            }
            return factors.Length * 4.0 / best / 1e9;
        }
        Best(false);   // compiled optimised before timing
        double slotMB = batch * width * 4 / 1e6;   // one slot: a row per element
        return new FactorBandwidth(Best(true), Best(false), slots * slotMB, FreshRate(batch, Math.Max(1, steps - 1), width, repeats), slotMB);
    }

    // Slots as Broyden allocates them (libtorch's empty, through the allocator as set), written twice: the first
    // write faults the pages in, the second is the write alone. The least of each over the repeats.
    static double FreshRate(int batch, int slots, int width, int repeats)
    {
        double first = double.PositiveInfinity, second = double.PositiveInfinity;
        for (int r = 0; r < Math.Max(3, repeats / 3); r++)
        {
            using var factors = torch.empty(batch, slots, width);
            var clock = Stopwatch.StartNew();
            factors.fill_(1f);
            first = Math.Min(first, clock.Elapsed.TotalSeconds);
            clock.Restart();
            factors.fill_(2f);
            second = Math.Min(second, clock.Elapsed.TotalSeconds);
        }
        return (double)batch * slots * width * 4 / Math.Max(first - second, 1e-9) / 1e9;
    }

    // Keeps the dots observable, so the loops are not removed.
    static float Sink;

    // The C# step's own kernel over the rows.
    static float Dots(float[] factors, float[] x, int rows, int width)
    {
        var dots = new float[rows];
        Deq.Solvers.RowKernels.Dots<float>(factors.AsSpan(0, rows * width), x, dots, width);
        return dots.Sum();
    }
}
