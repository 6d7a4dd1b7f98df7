using Deq.Data;
using Deq.Models;
using Deq.Training;
using TorchSharp;
using static TorchSharp.torch;

namespace Deq.Cli;

/// <summary>`deq train`: a registered language model on a corpus directory, with overrides.</summary>
internal static class TrainCommand
{
    public static int Run(string[] args)
    {
        var o = CliArgs.Parse(FlagsAsTrue(args, "resume"), new()
        {
            ["model"] = "lstm-tiny", ["corpus"] = "", ["steps"] = "1000", ["batch"] = "20", ["bptt"] = "35",
            ["lr"] = "1e-3", ["warmup"] = "0", ["min-lr"] = "0", ["clip"] = "0.25", ["seed"] = "0",
            ["eval-every"] = "0", ["eval-batch"] = "10", ["eval-segments"] = "0",
            ["checkpoint"] = "", ["checkpoint-every"] = "0", ["resume"] = "false",
            ["log"] = "", ["print-every"] = "50", ["device"] = "auto", ["dtype"] = "float32",
        });
        var corpusDir = o.Text("corpus") is { Length: > 0 } d ? d : throw new ArgumentException("--corpus DIR is required (a folder with ptb.*.txt or wiki.*.tokens)");
        var device = Deq.Native.Devices.Parse(o.Text("device"));
        var dtype = o.Text("dtype") switch
        {
            "float32" => ScalarType.Float32,
            "float64" => ScalarType.Float64,
            var other => throw new ArgumentException($"--dtype must be float32 or float64, got '{other}'"),
        };
        var options = new TrainOptions(
            Steps: o.Int("steps"), LearningRate: o.Double("lr"), WarmupSteps: o.Int("warmup"), MinLearningRate: o.Double("min-lr"),
            ClipNorm: o.Double("clip"), Seed: o.Int("seed"), EvalEvery: o.Int("eval-every"),
            CheckpointPath: o.Text("checkpoint") is { Length: > 0 } p ? p : null, CheckpointEvery: o.Int("checkpoint-every"),
            Resume: bool.TryParse(o.Text("resume"), out var r) ? r : throw new ArgumentException($"--resume must be true or false, got '{o.Text("resume")}'"));
        options.Validate();
        var taskOptions = new LanguageModelTaskOptions(new SegmentOptions(o.Int("batch"), o.Int("bptt")), o.Int("eval-batch"), EvalSegments: o.Int("eval-segments")).Validate();

        if (!DeqLanguageModels.Registry.Factories.ContainsKey(o.Text("model")))
            throw new ArgumentException($"unknown --model '{o.Text("model")}'; registered: {string.Join(", ", DeqLanguageModels.Registry.Names)}");
        using var corpus = Corpus.Load(corpusDir);
        Console.WriteLine($"{corpus.Name}: vocabulary {corpus.Vocabulary.Count:N0}, train {corpus.Train.shape[0]:N0} tokens, valid {corpus.Valid.shape[0]:N0}; model {o.Text("model")} on {device}");
        var model = DeqLanguageModels.Registry.Create(o.Text("model"), new LanguageModelSpec(corpus.Vocabulary.Count, device, dtype, options.Seed));
        var task = LanguageModelTask.Create(model, corpus, taskOptions);

        using var logFile = o.Text("log") is { Length: > 0 } logPath ? new StreamWriter(logPath, append: options.Resume) : null;
        var sink = LogSinks.Console(every: o.Int("print-every"));
        if (logFile is not null) sink = LogSinks.Combine(sink, LogSinks.JsonLines(logFile));

        using var cancel = new CancellationTokenSource();
        Console.CancelKeyPress += (_, e) => { e.Cancel = true; cancel.Cancel(); };
        var result = Trainer.Run(task, options, sink, cancel.Token);
        if (result.Interrupted)
            Console.WriteLine($"interrupted at step {result.Step}" + (options.CheckpointPath is { } cp ? $"; resume with --checkpoint {cp} --resume" : ""));
        else if (result.Valid is { } v)
            Console.WriteLine($"done: {result.Step} steps, valid loss {v.Loss:F4}, ppl {v.Perplexity:F2}");
        return result.Interrupted ? 130 : 0;
    }

    /// <summary>Lets a bare `--resume` (no value) mean `--resume true`.</summary>
    static string[] FlagsAsTrue(string[] args, params string[] flags)
    {
        var list = new List<string>();
        for (int i = 0; i < args.Length; i++)
        {
            list.Add(args[i]);
            if (flags.Any(f => args[i] == "--" + f) && (i + 1 >= args.Length || args[i + 1].StartsWith("--"))) list.Add("true");
        }
        return list.ToArray();
    }
}
