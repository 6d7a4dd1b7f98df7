// deq-paper-timing: ms per training step of Table 2's DEQ-TrellisNet at a scale preset (default `paper`:
// 24M parameters on PTB, batch 20, segments of 110), for a few hundred steps: the first --pretrain steps
// unrolled (the preset's L layers), the rest the equilibrium with the preset's solvers and implicit gradients.
// The device is Deq's one policy (DEQ_DEVICE). Prints a summary and writes it as JSON (--json).
// Every step ends with the loss read back to the host, so wall-clock step times include the GPU's work.
using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using Deq.Data;
using Deq.Experiments;
using Deq.Implicit;
using Deq.Models;
using Deq.Solvers;
using Deq.Training;

try
{
    return Run(args);
}
catch (Exception e) when (e is ArgumentException or InvalidOperationException or IOException or FormatException)
{
    Console.Error.WriteLine($"deq-paper-timing: {e.Message}");
    return 2;
}

static int Run(string[] args)
{
    var o = Options(args, new()
    {
        ["scale"] = "paper", ["steps"] = "300", ["pretrain"] = "50", ["max-seconds"] = "240",
        ["eval-segments"] = "5", ["json"] = "",
    });
    var scale = ExperimentScales.Parse(o["scale"]);
    int steps = Int(o, "steps"), pretrain = Int(o, "pretrain"), maxSeconds = Int(o, "max-seconds"), evalSegments = Int(o, "eval-segments");
    if (steps < 1 || pretrain < 0 || pretrain > steps) throw new ArgumentException($"need 0 <= --pretrain ({pretrain}) <= --steps ({steps}) and --steps >= 1");

    var settings = Table2Settings.For(scale);
    var schedule = settings.DeqSchedule with { PretrainSteps = pretrain };
    string solvers = $"{(schedule.Forward ?? EquilibriumOptions.Default.ForwardSolver).Describe()} with {schedule.AdjointAt(-1).Describe()}";
    var config = settings.Model with { Schedule = schedule };
    var b = settings.Budget;
    var device = ExperimentDevice.Default;
    using var data = LmData.Load("ptb");
    if (data.Synthetic && scale == ExperimentScale.Paper)
        throw new InvalidOperationException($"the paper preset needs PTB (vocabulary 10,000): {data.Description}");

    var model = DeqLanguageModels.TrellisNet("deq-trellisnet-timing", new LanguageModelSpec(data.Corpus.Vocabulary.Count, device, Seed: b.Seed), config);
    var (parameters, core) = LmTraining.Count(model.Module);
    var run = RunInfo.Capture(scale, device);
    Console.WriteLine($"DEQ-TrellisNet ({scale}): {LmTraining.Size(parameters)} parameters ({LmTraining.Size(core)} in the core), d_embed {config.NInp}, h {config.HSize}, " +
        $"batch {b.Batch}, segments of {b.SeqLen}; {pretrain} unrolled ({schedule.UnrolledLayers}-layer) steps, then {solvers}; " +
        $"{data.Description}; device {run.Device}");

    var task = LanguageModelTask.Create(model, data.Corpus with { Valid = data.Corpus.Test },
        new LanguageModelTaskOptions(new SegmentOptions(b.Batch, b.SeqLen), b.EvalBatch, b.SeqLen, evalSegments));
    var records = new List<LogRecord>();
    void Log(LogRecord r)
    {
        records.Add(r);
        if (r.Phase == Phase.Train && (r.Step <= 3 || r.Step % 25 == 0 || r.Step == pretrain + 1))
            Console.WriteLine($"  step {r.Step}/{r.TotalSteps} loss {r.Loss:F3} " +
                (r.Step > pretrain && r.Solver is { } s ? $"solver steps forward {s.ForwardSteps} backward {s.BackwardSteps} " : "") + $"({r.WallSeconds:F1} s)");
    }
    using var cancel = new CancellationTokenSource(TimeSpan.FromSeconds(maxSeconds));
    var clock = Stopwatch.StartNew();
    var result = Trainer.Run(task, new TrainOptions(Steps: steps, LearningRate: b.LearningRate, WarmupSteps: Math.Min(b.WarmupSteps, steps / 5),
        MinLearningRate: b.LearningRate / 10, Seed: b.Seed), Log, cancel.Token);
    ExperimentDevice.Synchronize(device);
    model.Module.Dispose();

    var train = records.Where(r => r.Phase == Phase.Train).ToList();
    var phases = new[]
    {
        Summarise($"unrolled pretraining ({schedule.UnrolledLayers} layers)", train, r => r.Step <= pretrain, solved: false),
        Summarise($"DEQ ({solvers})", train, r => r.Step > pretrain, solved: true),
    }.Where(p => p is not null).ToList();
    foreach (var p in phases) Console.WriteLine($"  {p}");
    if (result.Interrupted) Console.WriteLine($"  stopped by --max-seconds {maxSeconds} after {result.Step} of {steps} steps");
    if (result.Valid is { } v) Console.WriteLine($"  test ppl {v.Perplexity:F1} on the first {evalSegments} test segments ({v.Tokens:N0} tokens)");
    var peakRss = train.Select(r => r.Memory.PeakRssBytes ?? 0).DefaultIfEmpty(0).Max();

    if (o["json"] is { Length: > 0 } path)
        File.WriteAllText(path, JsonSerializer.Serialize(new
        {
            model = "DEQ-TrellisNet (Table 2)", scale = scale.ToString().ToLowerInvariant(), device = run.Device, machine = run.Machine,
            parameters, core_parameters = core, d_embed = config.NInp, h = config.HSize, batch = b.Batch, seq_len = b.SeqLen,
            pretrain_steps = pretrain, unrolled_layers = schedule.UnrolledLayers,
            solvers,
            steps_requested = steps, steps_done = result.Step, interrupted = result.Interrupted, wall_seconds = clock.Elapsed.TotalSeconds,
            host_peak_rss_bytes = peakRss, test_perplexity = result.Valid?.Perplexity, phases,
            data = data.Description,
        }, new JsonSerializerOptions { WriteIndented = true }));
    return 0;
}

// ms/step of one phase; the first 3 steps of a phase are warm-up (allocator growth, kernel selection) and left out of the mean.
static PhaseTiming? Summarise(string name, List<LogRecord> train, Func<LogRecord, bool> inPhase, bool solved)
{
    var ms = new List<double>();
    LogRecord? last = null;
    for (int i = 0; i < train.Count; i++)
    {
        if (!inPhase(train[i])) continue;
        ms.Add((train[i].WallSeconds - (i == 0 ? 0 : train[i - 1].WallSeconds)) * 1e3);
        last = train[i];
    }
    if (ms.Count == 0 || last is null) return null;
    var timed = ms.Count > 3 ? ms.Skip(3).ToList() : ms;
    var sorted = timed.OrderBy(x => x).ToList();
    // Solver stats only for the equilibrium phase (while pretraining they count unrolled layers).
    var stats = solved ? train.Where(inPhase).Select(r => r.Solver).Where(s => s?.ForwardSteps is not null).ToList() : [];
    return new PhaseTiming(name, ms.Count, timed.Count, timed.Average(), sorted[sorted.Count / 2], sorted[0], sorted[^1], ms[0],
        stats.Count > 0 ? stats.Average(s => s!.ForwardSteps!.Value) : null,
        stats.Count > 0 ? stats.Average(s => s!.BackwardSteps ?? 0) : null, last.Loss);
}

static Dictionary<string, string> Options(string[] args, Dictionary<string, string> defaults)
{
    for (int i = 0; i < args.Length; i++)
    {
        var key = args[i].StartsWith("--") ? args[i][2..] : throw new ArgumentException($"unexpected argument '{args[i]}'");
        if (!defaults.ContainsKey(key)) throw new ArgumentException($"unknown option --{key}; known: {string.Join(", ", defaults.Keys.Select(k => "--" + k))}");
        if (i + 1 >= args.Length) throw new ArgumentException($"--{key} needs a value");
        defaults[key] = args[++i];
    }
    return defaults;
}

static int Int(Dictionary<string, string> o, string key) =>
    int.TryParse(o[key], NumberStyles.Integer, CultureInfo.InvariantCulture, out var v) ? v : throw new ArgumentException($"--{key} must be an integer, got '{o[key]}'");

/// <summary>Timing of one phase of the run.</summary>
record PhaseTiming(string Phase, int Steps, int TimedSteps, double MeanMs, double MedianMs, double MinMs, double MaxMs, double FirstStepMs,
    double? MeanForwardSteps, double? MeanBackwardSteps, double LastLoss)
{
    public override string ToString() =>
        $"{Phase}: {Steps} steps, {MeanMs:F1} ms/step mean (median {MedianMs:F1}, min {MinMs:F1}, max {MaxMs:F1}; first step {FirstStepMs:F0} ms, " +
        $"left out with the next 2)" + (MeanForwardSteps is { } f ? $", solver steps forward {f:F1} backward {MeanBackwardSteps:F1}" : "") + $", last loss {LastLoss:F3}";
}
