using Deq.Experiments;
using Deq.Experiments.Benchmarks;

namespace Deq.Cli;

/// <summary>`deq bench [--quick] [--out FILE]`: the benchmarks (full: paper-figures/benchmarks.json, quick:
/// benchmarks-quick.json beside it); `deq bench memory-probe` measures one configuration; `deq bench toy` the toy's solver overheads.</summary>
internal static class BenchCommand
{
    public static int Run(string[] args)
    {
        if (args.FirstOrDefault() == "memory-probe") return MemoryProbeCommand.Run(args[1..]);
        if (args.FirstOrDefault() == "toy") return Toy();
        bool quick = args.Contains("--quick");
        var opts = CliArgs.Parse(args.Where(a => a != "--quick").ToArray(), new() { ["out"] = "" });
        // a quick run never replaces the committed full results unless --out names that file
        var file = quick ? "benchmarks-quick.json" : "benchmarks.json";
        var output = opts.Text("out") is { Length: > 0 } o ? Path.GetFullPath(o)
            : Environment.GetEnvironmentVariable(PaperFigures.Variable) is { Length: > 0 } d ? Path.Combine(d, file)
            : Path.Combine(Reproduce.FindRepositoryRoot(), "paper-figures", file);
        Console.WriteLine($"deq bench ({(quick ? "quick" : "full")}): CPU, writing {output}");
        var (json, table) = BenchmarkSuite.Run(quick ? BenchmarkSuite.Settings.Quick : BenchmarkSuite.Settings.Full, quick ? "quick" : "full");
        AtomicFile.WriteAllText(output, BenchmarkSuite.ToText(json));
        Console.WriteLine();
        Console.WriteLine(table);
        Console.WriteLine($"wrote {output}");
        return 0;
    }

    // `deq bench toy`: only the toy's per-iteration overheads (seconds, not minutes), one thread.
    static int Toy()
    {
        TorchSharp.torch.set_num_threads(1);
        var (costs, boundF, perCallF) = SolverBenchmarks.Toy();
        Console.WriteLine("toy: f(z) = tanh(W z + U x), D 128, batch 64, float32, one thread; weight norm bound once");
        foreach (var c in costs)
            Console.WriteLine($"  {c.Solver,-9} overhead over f {c.OverheadFraction,5:F2}x   {c.Seconds / c.Steps * 1e6,6:F0} us/step, f {c.FSeconds / c.Evaluations * 1e6:F0} us");
        Console.WriteLine($"  f: {boundF:F0} us with W bound once, {perCallF:F0} us with weight norm per call");
        return 0;
    }
}
