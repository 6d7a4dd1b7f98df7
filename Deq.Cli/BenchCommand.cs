using System.Text.Json.Nodes;
using Deq.Experiments;
using Deq.Experiments.Benchmarks;

namespace Deq.Cli;

/// <summary>`deq bench [--quick] [--memory | --paper-memory] [--out FILE]`: the benchmarks (full: paper-figures/benchmarks.json, quick:
/// benchmarks-quick.json beside it; --memory: only the memory targets, --paper-memory: only the paper's PTB width, each merged
/// into that file); `deq bench memory-probe` measures one configuration; `deq bench toy` the toy's solver overheads;
/// `deq bench solver` the solver overhead at h 512.</summary>
internal static class BenchCommand
{
    public static int Run(string[] args)
    {
        if (args.FirstOrDefault() == "memory-probe") return MemoryProbeCommand.Run(args[1..]);
        if (args.FirstOrDefault() == "toy") return Toy();
        if (args.FirstOrDefault() == "solver") return Solver();
        bool quick = args.Contains("--quick"), memory = args.Contains("--memory"), paper = args.Contains("--paper-memory");
        var opts = CliArgs.Parse(args.Where(a => a is not ("--quick" or "--memory" or "--paper-memory")).ToArray(), new() { ["out"] = "" });
        // a quick run never replaces the committed full results unless --out names that file
        var file = quick ? "benchmarks-quick.json" : "benchmarks.json";
        var output = opts.Text("out") is { Length: > 0 } o ? Path.GetFullPath(o)
            : Environment.GetEnvironmentVariable(PaperFigures.Variable) is { Length: > 0 } d ? Path.Combine(d, file)
            : Path.Combine(Reproduce.FindRepositoryRoot(), "paper-figures", file);
        var settings = quick ? BenchmarkSuite.Settings.Quick : BenchmarkSuite.Settings.Full;
        if (memory || paper)
        {
            // One section, merged into the report that is already there (the rest of it is kept).
            Console.WriteLine($"deq bench {(paper ? "--paper-memory" : "--memory")} ({(quick ? "quick" : "full")}): CPU, updating {output}");
            var (key, section, text) = BenchmarkSuite.RunMemorySection(settings, paper);
            var report = File.Exists(output) ? JsonNode.Parse(File.ReadAllText(output)) as JsonObject ?? new JsonObject() : new JsonObject();
            report[key] = section;
            AtomicFile.WriteAllText(output, BenchmarkSuite.ToText(report));
            Console.WriteLine(text);
            Console.WriteLine($"wrote {key} into {output}");
            return 0;
        }
        Console.WriteLine($"deq bench ({(quick ? "quick" : "full")}): CPU, writing {output}");
        var (json, table) = BenchmarkSuite.Run(settings, quick ? "quick" : "full");
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
        Console.WriteLine($"  allocator: {Deq.Native.FreedMemory.Status}");
        foreach (var c in costs)
            Console.WriteLine($"  {c.Solver,-9} overhead over f {c.OverheadFraction,5:F2}x   {c.Seconds / c.Steps * 1e6,6:F0} us/step, f {c.FSeconds / c.Evaluations * 1e6:F0} us");
        Console.WriteLine($"  f: {boundF:F0} us with W bound once, {perCallF:F0} us with weight norm per call");
        return 0;
    }

    // `deq bench solver`: only the full bench's solver overhead at h 512 (about a minute), one thread.
    static int Solver()
    {
        TorchSharp.torch.set_num_threads(1);
        var s = BenchmarkSuite.Settings.Full;
        Console.WriteLine($"solver overhead: DEQ-TrellisNet core h {s.OverheadWidth}, seq {s.OverheadSeqLen}, batch {s.OverheadBatch}, {BenchmarkSuite.OverheadSteps} steps, least of {s.Repeats} solves, one thread");
        Console.WriteLine($"  allocator: {Deq.Native.FreedMemory.Status}");
        var (costs, floor) = BenchmarkSuite.SolverOverhead(s);
        foreach (var c in costs)
            Console.WriteLine($"  {c.Solver,-9} overhead {c.OverheadFraction,6:P1} of f   {c.Seconds / c.Steps * 1000,6:F2} ms/step, f {c.FSeconds / c.Evaluations * 1000:F2} ms, " +
                $"bookkeeping {(c.Seconds - c.FSeconds) / c.Steps * 1000:F2} ms a step");
        Console.WriteLine("  " + BenchmarkSuite.FactorFloor(floor));
        return 0;
    }
}
