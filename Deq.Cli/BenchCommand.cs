using System.Text.Json.Nodes;
using Deq.Experiments;
using Deq.Experiments.Benchmarks;

namespace Deq.Cli;

/// <summary>`deq bench [--quick] [--memory | --paper-memory] [--out FILE]`: the benchmarks (--memory: only the memory targets, --paper-memory: only the paper's PTB width, each merged into FILE); `deq bench memory-probe` measures one configuration.</summary>
internal static class BenchCommand
{
    public static int Run(string[] args)
    {
        if (args.FirstOrDefault() == "memory-probe") return MemoryProbeCommand.Run(args[1..]);
        bool quick = args.Contains("--quick"), memory = args.Contains("--memory"), paper = args.Contains("--paper-memory");
        var opts = CliArgs.Parse(args.Where(a => a is not ("--quick" or "--memory" or "--paper-memory")).ToArray(), new() { ["out"] = "" });
        var output = opts.Text("out") is { Length: > 0 } o ? Path.GetFullPath(o)
            : Environment.GetEnvironmentVariable(PaperFigures.Variable) is { Length: > 0 } d ? Path.Combine(d, "benchmarks.json")
            : Path.Combine(Reproduce.FindRepositoryRoot(), "paper-figures", "benchmarks.json");
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
}
