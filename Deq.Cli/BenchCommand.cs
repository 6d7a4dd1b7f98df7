using Deq.Experiments;
using Deq.Experiments.Benchmarks;

namespace Deq.Cli;

/// <summary>`deq bench [--quick] [--out FILE]`: the benchmarks (full: paper-figures/benchmarks.json, quick:
/// benchmarks-quick.json beside it); `deq bench memory-probe` measures one configuration.</summary>
internal static class BenchCommand
{
    public static int Run(string[] args)
    {
        if (args.FirstOrDefault() == "memory-probe") return MemoryProbeCommand.Run(args[1..]);
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
}
