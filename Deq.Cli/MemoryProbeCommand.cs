using Deq.Experiments.Benchmarks;

namespace Deq.Cli;

/// <summary>`deq bench memory-probe [--ledger] [--json]`: one configuration's peak training memory (or, with --ledger, its memory ledger), measured in this (fresh) process.</summary>
internal static class MemoryProbeCommand
{
    public static int Run(string[] args)
    {
        bool json = args.Contains("--json"), ledger = args.Contains("--ledger");
        var opts = CliArgs.Parse(args.Where(a => a != "--json" && a != "--ledger").ToArray(), new()
        {
            ["family"] = "trellisnet", ["mode"] = "deq", ["iterations"] = "30", ["backward-iterations"] = "0",
            ["width"] = "256", ["seq"] = "150", ["batch"] = "15", ["broyden-memory"] = "30", ["device"] = "cpu", ["seed"] = "0", ["solvers"] = "lean",
        });
        var config = new MemoryProbeConfig(
            Family: Parse<CoreFamily>(opts.Text("family"), "family"),
            Mode: Parse<ProbeMode>(opts.Text("mode"), "mode"),
            Iterations: opts.Int("iterations"), Width: opts.Int("width"), SeqLen: opts.Int("seq"), Batch: opts.Int("batch"),
            BackwardIterations: opts.Int("backward-iterations"), BroydenMemory: opts.Int("broyden-memory"),
            Device: opts.Text("device"), Seed: opts.Int("seed"), Solvers: Parse<ProbeSolvers>(opts.Text("solvers"), "solvers")).Validate();
        if (ledger)
        {
            var l = TrainingMemory.LedgerInThisProcess(config);
            Console.WriteLine(json ? TrainingMemory.ToJson(l) : $"{config.Label}, seq {config.SeqLen}, batch {config.Batch}: memory ledger of one step{Environment.NewLine}{l}");
            return 0;
        }
        var m = TrainingMemory.ProbeInThisProcess(config);
        if (json) Console.WriteLine(TrainingMemory.ToJson(m));
        else
        {
            Console.WriteLine($"{config.Label}, seq {config.SeqLen}, batch {config.Batch}: peak {m.PeakMiB:F1} MiB above a baseline of {m.BaselineBytes / 1048576.0:F1} MiB " +
                $"({m.PeakInStates:F1} copies of z), step {m.StepSeconds:F2} s, forward {m.ForwardSteps} / backward {m.BackwardSteps} steps");
            Console.WriteLine($"method: {m.Method}");
        }
        return 0;
    }

    static T Parse<T>(string text, string name) where T : struct, Enum =>
        Enum.TryParse<T>(text, ignoreCase: true, out var v) && Enum.IsDefined(v)
            ? v : throw new ArgumentException($"--{name} must be one of {string.Join(", ", Enum.GetNames<T>().Select(n => n.ToLowerInvariant()))}; got '{text}'");
}
