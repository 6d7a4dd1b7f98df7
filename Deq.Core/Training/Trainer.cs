using System.Diagnostics;
using System.Text;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Deq.Training;

/// <summary>How a run ended.</summary>
/// <param name="Step">Steps completed.</param>
/// <param name="ResumedFrom">Step the run resumed from (0 for a fresh run).</param>
/// <param name="LastLoss">Loss of the last training step taken in this call (null if none).</param>
/// <param name="Valid">Last evaluation (null without an evaluator or when interrupted before one).</param>
/// <param name="Interrupted">True when cancelled before the last step (a checkpoint was written if a path was given).</param>
public sealed record TrainResult(long Step, long ResumedFrom, double? LastLoss, EvalOutput? Valid, bool Interrupted);

/// <summary>
/// Adam with linear warmup and cosine decay, gradient-norm clipping, periodic evaluation, logging and
/// checkpoints that resume bit-for-bit: model, Adam moments, torch's RNG, the data-order RNG and the
/// task's carried state all go into the checkpoint, and the learning rate is a pure function of the step.
/// </summary>
public static class Trainer
{
    const ulong DataSeedSalt = 0x9E3779B97F4A7C15;

    /// <summary>
    /// Trains <paramref name="task"/> for <see cref="TrainOptions.Steps"/> steps (or the rest of them when
    /// resuming). Cancelling stops before the next step and writes a checkpoint when a path is set.
    /// </summary>
    public static TrainResult Run(TrainingTask task, TrainOptions options, Action<LogRecord>? log = null, CancellationToken cancel = default)
    {
        options.Validate();
        log ??= LogSinks.None;
        var fingerprint = Fingerprint.Merge(options.Fingerprint(), task.Fingerprint, ParameterShapes(task.Module));
        torch.manual_seed(options.Seed);
        using var data = new Generator(unchecked((ulong)options.Seed ^ DataSeedSalt), torch.CPU);
        var parameters = task.Module.parameters().ToList();
        using var optimizer = torch.optim.Adam(parameters, options.LearningRate, options.Beta1, options.Beta2, weight_decay: options.WeightDecay);

        long start = 0;
        if (options.Resume && options.CheckpointPath is { } resumePath && File.Exists(resumePath))
            start = Restore(resumePath, task, optimizer, data, fingerprint);

        var clock = Stopwatch.StartNew();
        double? lastLoss = null;
        EvalOutput? valid = null;
        long step = start;
        bool evaluatedAtEnd = false;
        for (; step < options.Steps; step++)
        {
            if (cancel.IsCancellationRequested)
            {
                if (options.CheckpointPath is { } p) Save(p, task, optimizer, data, fingerprint, step);
                return new TrainResult(step, start, lastLoss, valid, Interrupted: true);
            }
            double lr = LearningRate.WarmupCosine(step, options.LearningRate, options.WarmupSteps, options.Steps, options.MinLearningRate);
            foreach (var g in optimizer.ParamGroups) g.LearningRate = lr;
            task.Module.train();
            optimizer.zero_grad();
            double loss, gradNorm;
            long tokens;
            SolverStats? stats;
            using (var scope = torch.NewDisposeScope())
            {
                var output = task.Step(new StepContext(step, data));
                loss = output.Loss.ToDouble();
                if (!double.IsFinite(loss))
                    throw new InvalidOperationException($"step {step + 1}: the loss is {loss}; stopping before it reaches the parameters (lower --lr or check the model).");
                output.Loss.backward();
                gradNorm = torch.nn.utils.clip_grad_norm_(parameters, options.ClipNorm > 0 ? options.ClipNorm : double.MaxValue);
                if (!double.IsFinite(gradNorm))
                    throw new InvalidOperationException($"step {step + 1}: the gradient norm is {gradNorm}; stopping before it reaches the parameters.");
                optimizer.step();
                stats = output.Stats?.Invoke();
                tokens = output.Tokens;
            }
            lastLoss = loss;
            log(new LogRecord(Phase.Train, step + 1, options.Steps, loss, Math.Exp(loss), lr, gradNorm, tokens, stats,
                clock.Elapsed.TotalSeconds, ProcessMemory.Now()));
            bool last = step + 1 == options.Steps;
            if (task.Evaluate is not null && (last || options.EvalEvery > 0 && (step + 1) % options.EvalEvery == 0))
            {
                valid = Evaluate(task);
                evaluatedAtEnd = last;
                log(new LogRecord(Phase.Valid, step + 1, options.Steps, valid.Loss, valid.Perplexity, null, null, valid.Tokens, valid.Stats,
                    clock.Elapsed.TotalSeconds, ProcessMemory.Now()));
            }
            if (options.CheckpointPath is { } path && (last || options.CheckpointEvery > 0 && (step + 1) % options.CheckpointEvery == 0))
                Save(path, task, optimizer, data, fingerprint, step + 1);
        }
        if (!evaluatedAtEnd && task.Evaluate is not null)
        {
            valid = Evaluate(task);
            log(new LogRecord(Phase.Valid, step, options.Steps, valid.Loss, valid.Perplexity, null, null, valid.Tokens, valid.Stats,
                clock.Elapsed.TotalSeconds, ProcessMemory.Now()));
        }
        return new TrainResult(step, start, lastLoss, valid, Interrupted: false);
    }

    /// <summary>Runs the task's evaluator in eval mode without gradients (the module is left in train mode).</summary>
    public static EvalOutput Evaluate(TrainingTask task)
    {
        if (task.Evaluate is null) throw new InvalidOperationException("this training task has no evaluator.");
        task.Module.eval();
        try
        {
            using var noGrad = torch.no_grad();
            using var scope = torch.NewDisposeScope();
            var result = task.Evaluate();
            if (result.Tokens <= 0) throw new InvalidOperationException("evaluation covered no tokens.");
            if (!double.IsFinite(result.TotalNll)) throw new InvalidOperationException($"evaluation NLL is {result.TotalNll}.");
            return result;
        }
        finally { task.Module.train(); }
    }

    /// <summary>The step a checkpoint was written at and its configuration fields (verifies the file).</summary>
    public static (long Step, IReadOnlyDictionary<string, string> Fingerprint) Inspect(string path)
    {
        var s = CheckpointFile.Read(path);
        return (BitConverter.ToInt64(Section(s, path, "step")), Fingerprint.FromBytes(Section(s, path, "fingerprint")));
    }

    static IReadOnlyDictionary<string, string> ParameterShapes(nn.Module module) =>
        new SortedDictionary<string, string> { ["model.parameters"] = string.Join(";", module.named_parameters().Select(p => $"{p.name}[{string.Join(",", p.parameter.shape)}]:{p.parameter.dtype}")) };

    static void Save(string path, TrainingTask task, Adam optimizer, Generator data, IReadOnlyDictionary<string, string> fingerprint, long step)
    {
        var sections = new List<(string, byte[])>
        {
            ("fingerprint", Fingerprint.ToBytes(fingerprint)),
            ("step", BitConverter.GetBytes(step)),
            ("model", Bytes(w => task.Module.save(w))),
            ("optimizer", Bytes(optimizer.save_state_dict)),
            ("torch_rng", TensorBytes.Of(torch.random.get_rng_state())),
            ("data_rng", TensorBytes.Of(data.get_state())),
        };
        if (task.State is not null)
            foreach (var (name, t) in task.State.Save()) sections.Add(("task/" + name, TensorBytes.Of(t)));
        CheckpointFile.Write(path, sections);
    }

    static long Restore(string path, TrainingTask task, Adam optimizer, Generator data, IReadOnlyDictionary<string, string> fingerprint)
    {
        var s = CheckpointFile.Read(path);
        var saved = Fingerprint.FromBytes(Section(s, path, "fingerprint"));
        var diff = Fingerprint.Diff(saved, fingerprint);
        if (diff.Count > 0)
            throw new InvalidOperationException($"checkpoint {path} was written by another configuration; it differs in:\n  {string.Join("\n  ", diff)}\n" +
                "Use the original settings to resume, or another --checkpoint path to start afresh.");
        long step = BitConverter.ToInt64(Section(s, path, "step"));
        var device = task.Module.parameters().FirstOrDefault()?.device ?? torch.CPU;
        Guard(path, "model state", () => task.Module.load(new BinaryReader(new MemoryStream(Section(s, path, "model"))), strict: true));
        Guard(path, "optimizer state", () => optimizer.load_state_dict(new BinaryReader(new MemoryStream(Section(s, path, "optimizer")))));
        Guard(path, "RNG state", () =>
        {
            using var rng = TensorBytes.From(Section(s, path, "torch_rng"));
            torch.random.set_rng_state(rng);
            using var dataRng = TensorBytes.From(Section(s, path, "data_rng"));
            data.set_state(dataRng);
        });
        if (task.State is not null)
        {
            var state = s.Where(kv => kv.Key.StartsWith("task/")).ToDictionary(kv => kv.Key["task/".Length..], kv => TensorBytes.From(kv.Value, device));
            Guard(path, "task state", () => task.State.Load(state));
        }
        return step;
    }

    static byte[] Section(IReadOnlyDictionary<string, byte[]> sections, string path, string name) =>
        sections.TryGetValue(name, out var b) ? b : throw new InvalidDataException($"checkpoint {path} lacks its '{name}' section.");

    static void Guard(string path, string what, Action load)
    {
        try { load(); }
        catch (Exception e) when (e is not InvalidDataException)
        {
            throw new InvalidDataException($"checkpoint {path}: its {what} does not fit this run ({e.Message}).", e);
        }
    }

    static byte[] Bytes(Action<BinaryWriter> write)
    {
        var ms = new MemoryStream();
        using (var w = new BinaryWriter(ms, Encoding.UTF8, leaveOpen: true)) write(w);
        return ms.ToArray();
    }
}
