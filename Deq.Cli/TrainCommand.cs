using System.Globalization;
using Deq.Data;
using Deq.Implicit;
using Deq.Models;
using Deq.Solvers;
using Deq.Training;
using static TorchSharp.torch;

namespace Deq.Cli;

/// <summary>`deq train`: a registered language model on a corpus directory, with overrides.</summary>
internal static class TrainCommand
{
    public static int Run(string[] args)
    {
        var o = CliArgs.Parse(args, new()
        {
            ["model"] = "lstm-tiny", ["corpus"] = "", ["steps"] = "1000", ["batch"] = "20", ["bptt"] = "35",
            ["lr"] = "1e-3", ["warmup"] = "0", ["min-lr"] = "0", ["clip"] = "0.25", ["seed"] = "0",
            ["eval-every"] = "0", ["eval-batch"] = "10", ["eval-segments"] = "0",
            ["checkpoint"] = "", ["checkpoint-every"] = "0", ["resume"] = "false", ["force"] = "false",
            ["skip-nonfinite"] = "0", ["unknown-words"] = "error",
            ["log"] = "", ["print-every"] = "50", ["device"] = "auto", ["dtype"] = "float32",
            ["forward-solver"] = "", ["forward-iters"] = "", ["forward-tol"] = "", ["backward-iters"] = "", ["backward-tol"] = "",
            ["solver-memory"] = "",
        }, flags: ["resume", "force", "skip-nonfinite"], flagValues: new Dictionary<string, string> { ["skip-nonfinite"] = "10" });
        var corpusDir = o.Text("corpus") is { Length: > 0 } d ? d : throw new ArgumentException("--corpus DIR is required (a folder with ptb.*.txt or wiki.*.tokens)");
        var device = Deq.Native.Devices.Parse(o.Text("device"));
        var dtype = o.Choice("dtype", "float32", "float64") == "float32" ? ScalarType.Float32 : ScalarType.Float64;
        var unknown = o.Choice("unknown-words", "error", "map") == "map" ? UnknownWords.MapToUnk : UnknownWords.Error;
        var options = new TrainOptions(
            Steps: o.Int("steps"), LearningRate: o.Double("lr"), WarmupSteps: o.Int("warmup"), MinLearningRate: o.Double("min-lr"),
            ClipNorm: o.Double("clip"), Seed: o.Int("seed"), EvalEvery: o.Int("eval-every"),
            CheckpointPath: o.Text("checkpoint") is { Length: > 0 } p ? p : null, CheckpointEvery: o.Int("checkpoint-every"),
            Resume: o.Bool("resume"), Overwrite: o.Bool("force"), SkipNonFiniteSteps: o.Int("skip-nonfinite"));
        Validated(options, dtype);
        var taskOptions = new LanguageModelTaskOptions(new SegmentOptions(o.Int("batch"), o.Int("bptt")), o.Int("eval-batch"), EvalSegments: o.Int("eval-segments")).Validate();
        var model = o.Text("model");
        if (!DeqLanguageModels.Registry.Factories.ContainsKey(model))
            throw new ArgumentException($"unknown --model '{model}'; registered: {string.Join(", ", DeqLanguageModels.Registry.Names)}");
        var solver = TrainSolverArgs.Parse(o, model);

        // Every path is checked before the corpus is read or a step is taken.
        var logPath = o.Text("log") is { Length: > 0 } lp ? lp : null;
        if (logPath is not null && options.CheckpointPath is not null && Path.GetFullPath(logPath) == Path.GetFullPath(options.CheckpointPath))
            throw new ArgumentException($"--log and --checkpoint are the same file ({logPath}); give them different paths");
        var start = Trainer.CheckCheckpoint(options);
        if (logPath is not null) CheckLog(logPath, options);
        Report(start, options);

        using var corpus = Corpus.Load(corpusDir, new CorpusOptions(unknown));
        Console.WriteLine($"{corpus.Name}: vocabulary {corpus.Vocabulary.Count:N0}, train {corpus.Train.shape[0]:N0} tokens, valid {corpus.Valid.shape[0]:N0}; model {model} on {device}");
        var (forward, adjoint) = solver?.Build() ?? (null, null);
        if (forward is not null) Console.WriteLine($"forward solver: {forward.Describe()}");
        if (adjoint is not null) Console.WriteLine($"adjoint: {adjoint.Describe()}");
        var lm = DeqLanguageModels.Registry.Create(model, new LanguageModelSpec(corpus.Vocabulary.Count, device, dtype, options.Seed, forward, adjoint));
        var task = LanguageModelTask.Create(lm, corpus, taskOptions);

        using var logFile = logPath is null ? null : new StreamWriter(logPath, append: start.Resumes);
        var sink = LogSinks.Console(every: o.Int("print-every"));
        if (logFile is not null) sink = LogSinks.Combine(sink, LogSinks.JsonLines(logFile));

        using var cancel = new CancellationTokenSource();
        Console.CancelKeyPress += (_, e) => { e.Cancel = true; cancel.Cancel(); };
        var result = Trainer.Run(task, options, sink, cancel.Token);
        var skipped = result.SkippedSteps > 0 ? $" ({result.SkippedSteps} skipped: non-finite)" : "";
        if (result.Interrupted)
            Console.WriteLine($"interrupted at step {result.Step}{skipped}" + (options.CheckpointPath is { } cp ? $"; resume with --checkpoint {cp} --resume" : ""));
        else if (result.Valid is { } v)
            Console.WriteLine($"done: {result.Step} steps{skipped}, valid loss {v.Loss:F4}, ppl {v.Perplexity:F2}");
        return result.Interrupted ? 130 : 0;
    }

    /// <summary>TrainOptions.Validate with the CLI's option names in the message.</summary>
    static TrainOptions Validated(TrainOptions options, ScalarType dtype)
    {
        try { return options.Validate().ValidateFor(dtype); }
        catch (ArgumentOutOfRangeException e) when (e.ParamName is { } name && OptionNames.TryGetValue(name, out var flag))
        {
            throw new ArgumentOutOfRangeException(name, e.ActualValue, $"--{flag}: {e.Message.Split(" (Parameter")[0]}");
        }
    }

    static readonly Dictionary<string, string> OptionNames = new()
    {
        ["Steps"] = "steps", ["LearningRate"] = "lr", ["WarmupSteps"] = "warmup", ["MinLearningRate"] = "min-lr", ["ClipNorm"] = "clip", ["WeightDecay"] = "weight-decay",
        ["EvalEvery"] = "eval-every", ["CheckpointEvery"] = "checkpoint-every", ["SkipNonFiniteSteps"] = "skip-nonfinite",
    };

    /// <summary>A fresh run does not truncate an existing log unless --force; the log's folder must be writable.</summary>
    static void CheckLog(string path, TrainOptions options)
    {
        if (Directory.Exists(path)) throw new ArgumentException($"--log {path} is a directory; give a file such as {Path.Combine(path, "train.jsonl")}");
        if (File.Exists(path) && !options.Resume && !options.Overwrite)
            throw new IOException($"--log {path} already exists; a fresh run would replace it: pass --force, --resume (to append), or another --log path");
        var dir = Path.GetDirectoryName(Path.GetFullPath(path))!;
        if (!Directory.Exists(dir)) throw new DirectoryNotFoundException($"--log {path}: the folder {dir} does not exist");
        try { using (File.Open(path, FileMode.Append, FileAccess.Write)) { } }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new IOException($"--log {path} is not writable ({e.Message}); pick another path", e);
        }
    }

    static void Report(CheckpointStart start, TrainOptions options)
    {
        if (start.StaleTemporariesRemoved > 0)
            Console.WriteLine($"removed {start.StaleTemporariesRemoved} temporary file(s) of interrupted checkpoint writes next to {start.Path}");
        if (start.ResumeStartsAfresh(options))
            Console.WriteLine($"--resume: no checkpoint at {start.Path} yet; starting afresh (it is written there)");
        else if (start.Replaces)
            Console.WriteLine($"--force: replacing the existing checkpoint {start.Path}");
        else if (start.Resumes)
        {
            Console.WriteLine($"resuming {start.Path} at step {start.Step} of {options.Steps}");
            if (start.SavedTotalSteps != options.Steps && start.SavedTotalSteps > 0)
            {
                double next = LearningRate.WarmupCosine(start.Step, options.LearningRate, options.WarmupSteps, options.Steps, options.MinLearningRate);
                double before = LearningRate.WarmupCosine(start.Step, options.LearningRate, options.WarmupSteps, start.SavedTotalSteps, options.MinLearningRate);
                Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                    $"extending the run from {start.SavedTotalSteps} to {options.Steps} steps: the cosine schedule now ends at step {options.Steps}, " +
                    $"so step {start.Step + 1} runs at lr {next:E2} (the {start.SavedTotalSteps}-step schedule gave {before:E2})"));
            }
        }
    }
}

/// <summary>
/// `deq train`'s solver options, checked as given. Null when none is given: the model preset's solvers stay.
/// The forward solver is replaced when a forward option or --solver-memory is given; the adjoint (the implicit
/// gradient's fixed point g = J^T g + dL/dz*) when a backward option, --solver-memory or --forward-solver is
/// given, solved by the same method as the forward solve. The method not given is the memory-lean pair
/// (<see cref="Deq.Implicit.EquilibriumOptions.LeanForward"/> and <see cref="Deq.Implicit.EquilibriumOptions.LeanAdjointSolve"/>),
/// or Anderson where only --solver-memory is given. Limits not given take the training defaults (forward 30
/// iterations to relative 1e-4, adjoint 40 to 1e-5; Anderson's history 5 forward and 3 adjoint, Broyden's rank 30),
/// not the preset's.
/// </summary>
/// <param name="Forward">"lean", "anderson", "broyden" or "forward" (forward iteration), or null for the preset's.</param>
/// <param name="ForwardIterations">Most forward solver steps.</param>
/// <param name="ForwardTolerance">Relative residual at which the forward solve stops.</param>
/// <param name="BackwardIterations">Most adjoint solver steps.</param>
/// <param name="BackwardTolerance">Relative residual at which the adjoint solve stops.</param>
/// <param name="Memory">Anderson's or Broyden's history length.</param>
internal sealed record TrainSolverArgs(string? Forward, int? ForwardIterations, double? ForwardTolerance,
                                       int? BackwardIterations, double? BackwardTolerance, int? Memory)
{
    static readonly string[] Names = ["forward-solver", "forward-iters", "forward-tol", "backward-iters", "backward-tol", "solver-memory"];

    public static TrainSolverArgs? Parse(CliArgs o, string model)
    {
        var given = Names.Where(o.Given).ToList();
        if (given.Count == 0) return null;
        if (!model.StartsWith("deq-"))
            throw new ArgumentException($"--{given[0]} applies to the DEQ models (deq-*); --model {model} has no equilibrium solver");
        var forward = o.Given("forward-solver") ? o.Choice("forward-solver", "lean", "anderson", "broyden", "forward") : null;
        int? memory = o.Given("solver-memory") ? o.Positive("solver-memory") : null;
        if (memory is not null && forward == "forward")
            throw new ArgumentException("--solver-memory applies to anderson and broyden; forward iteration keeps no history");
        if (memory is not null && forward == "lean")
            throw new ArgumentException("--solver-memory applies to anderson and broyden; the lean pair's histories are fixed (Anderson m = 2 forward fallback, none on the adjoint)");
        return new TrainSolverArgs(forward,
            o.Given("forward-iters") ? o.Positive("forward-iters") : null,
            o.Given("forward-tol") ? o.PositiveNumber("forward-tol") : null,
            o.Given("backward-iters") ? o.Positive("backward-iters") : null,
            o.Given("backward-tol") ? o.PositiveNumber("backward-tol") : null,
            memory);
    }

    /// <summary>The solvers these options replace (null: keep the preset's).</summary>
    public (Solver? Forward, Adjoint? Adjoint) Build()
    {
        var method = Forward ?? (Memory is not null ? "anderson" : "lean");
        bool forward = Forward is not null || ForwardIterations is not null || ForwardTolerance is not null || Memory is not null;
        bool adjoint = Forward is not null || BackwardIterations is not null || BackwardTolerance is not null || Memory is not null;
        var (fi, ft, bi, bt) = (ForwardIterations ?? 30, ForwardTolerance ?? 1e-4, BackwardIterations ?? 40, BackwardTolerance ?? 1e-5);
        if (method == "lean")
            return (forward ? EquilibriumOptions.LeanForward(fi, ft) : null,
                    adjoint ? Deq.Implicit.Adjoint.Implicit(EquilibriumOptions.LeanAdjointSolve(bi, bt)) : null);
        return (forward ? Make(method, fi, ft, Memory ?? (method == "anderson" ? 5 : 30)) : null,
                adjoint ? Deq.Implicit.Adjoint.Implicit(Make(method, bi, bt, Memory ?? (method == "anderson" ? 3 : 30))) : null);
    }

    static Solver Make(string method, int iterations, double tolerance, int memory)
    {
        var options = new SolverOptions(MaxIter: iterations, Tol: tolerance);
        return method switch
        {
            "anderson" => Anderson.Create(options, new AndersonOptions(Memory: memory)),
            "broyden" => Broyden.Create(options, new BroydenOptions(Memory: memory)),
            _ => ForwardIteration.Create(options),
        };
    }
}
