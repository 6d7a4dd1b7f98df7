using System.Diagnostics;
using System.Text;
using Deq.Implicit;
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
/// <param name="SkippedSteps">Steps skipped under <see cref="TrainOptions.SkipNonFiniteSteps"/> in this call.</param>
public sealed record TrainResult(long Step, long ResumedFrom, double? LastLoss, EvalOutput? Valid, bool Interrupted, int SkippedSteps = 0);

/// <summary>
/// Adam with linear warmup and cosine decay, gradient-norm clipping, periodic evaluation, logging and
/// checkpoints that resume bit-for-bit: model, Adam moments, torch's RNG, the data-order RNG and the
/// task's carried state all go into the checkpoint, and the learning rate is a pure function of the step.
/// A non-finite (or diverged) loss or gradient, or a faulted adjoint solve, stops the run at that step, naming
/// it, before the update reaches the parameters; the last checkpoint written stays as it was.
/// </summary>
public static class Trainer
{
    const ulong DataSeedSalt = 0x9E3779B97F4A7C15;

    /// <summary>
    /// Checks the checkpoint path before anything is trained, and removes stale temporary files of
    /// interrupted writes. A fresh run on an existing checkpoint is refused unless
    /// <see cref="TrainOptions.Overwrite"/>; an unwritable directory is an <see cref="IOException"/> now rather
    /// than at the first save. Idempotent: <see cref="Run"/> calls it too.
    /// </summary>
    public static CheckpointStart CheckCheckpoint(TrainOptions options)
    {
        if (options.CheckpointPath is not { } path) return new CheckpointStart(null, false, 0, 0, false, 0);
        CheckpointFile.EnsureWritable(path);
        int stale = CheckpointFile.RemoveStaleTemporaries(path);
        if (!File.Exists(path)) return new CheckpointStart(path, false, 0, 0, false, stale);
        if (options.Resume)
        {
            var info = Inspect(path);
            if (info.Step > options.Steps)
                throw new ArgumentOutOfRangeException(nameof(options.Steps), options.Steps,
                    $"checkpoint {path} is at step {info.Step}, past the {options.Steps} steps asked for; resume with at least {info.Step} steps (--steps).");
            return new CheckpointStart(path, true, info.Step, info.TotalSteps, false, stale);
        }
        if (!options.Overwrite)
        {
            string what;
            try { var info = Inspect(path); what = $"a checkpoint at step {info.Step} of {info.TotalSteps}"; }
            catch (InvalidDataException) { what = "a file that is not a readable checkpoint"; }
            throw new IOException($"checkpoint {path} already exists ({what}); continue it with --resume (TrainOptions.Resume), " +
                "replace it with --force (TrainOptions.Overwrite), or choose another path.");
        }
        return new CheckpointStart(path, false, 0, 0, true, stale);
    }

    /// <summary>
    /// Trains <paramref name="task"/> for <see cref="TrainOptions.Steps"/> steps (or the rest of them when
    /// resuming). Cancelling stops before the next step and writes a checkpoint when a path is set.
    /// </summary>
    public static TrainResult Run(TrainingTask task, TrainOptions options, Action<LogRecord>? log = null, CancellationToken cancel = default)
    {
        options.Validate();
        var parameters = task.Module.parameters().ToList();
        // A module whose submodules were never registered has no parameters: every step would have a zero gradient.
        if (!parameters.Any(p => p.requires_grad))
            throw new ArgumentException($"TrainingTask.Module ({task.Module.GetType().Name}) has no trainable parameters, so every gradient would be zero; register the submodules (e.g. as fields of a Module with RegisterComponents) or pass the module that owns them.", nameof(task));
        foreach (var dtype in parameters.Select(p => p.dtype).Distinct()) options.ValidateFor(dtype);
        log ??= LogSinks.None;
        var checkpoint = CheckCheckpoint(options);
        var fingerprint = Fingerprint.Merge(options.Fingerprint(), task.Fingerprint, ParameterShapes(task.Module));
        torch.manual_seed(options.Seed);
        using var data = new Generator(unchecked((ulong)options.Seed ^ DataSeedSalt), torch.CPU);
        using var optimizer = torch.optim.Adam(parameters, options.LearningRate, options.Beta1, options.Beta2, weight_decay: options.WeightDecay);

        long start = 0;
        if (checkpoint.Resumes) start = Restore(checkpoint.Path!, task, optimizer, data, fingerprint);
        long? lastSaved = checkpoint.Resumes ? start : null;

        var clock = Stopwatch.StartNew();
        double? lastLoss = null;
        EvalOutput? valid = null;
        long step = start;
        bool evaluatedAtEnd = false;
        int skipped = 0, skippedInARow = 0;
        var young = new YoungGeneration();
        for (; step < options.Steps; step++)
        {
            if (cancel.IsCancellationRequested)
            {
                if (options.CheckpointPath is { } p) Save(p, task, optimizer, data, fingerprint, step, options.Steps);
                return new TrainResult(step, start, lastLoss, valid, Interrupted: true, skipped);
            }
            double lr = LearningRate.WarmupCosine(step, options.LearningRate, options.WarmupSteps, options.Steps, options.MinLearningRate);
            foreach (var g in optimizer.ParamGroups) g.LearningRate = lr;
            task.Module.train();
            var taken = TakeStep(task, optimizer, parameters, options, new StepContext(step, data));
            young.AfterStep();
            if (taken.Fault is { } fault)
            {
                if (++skippedInARow > options.SkipNonFiniteSteps) throw Stopped(options, step, fault, taken.Hint, skippedInARow, lastSaved);
                skipped++;
            }
            else
            {
                skippedInARow = 0;
                lastLoss = taken.Loss;
            }
            log(new LogRecord(taken.Fault is null ? Phase.Train : Phase.Skipped, step + 1, options.Steps, taken.Loss, Math.Exp(taken.Loss), lr,
                taken.GradNorm, taken.Tokens, taken.Stats, clock.Elapsed.TotalSeconds, ProcessMemory.Now()));
            bool last = step + 1 == options.Steps;
            if (task.Evaluate is not null && (last || options.EvalEvery > 0 && (step + 1) % options.EvalEvery == 0))
            {
                valid = EvaluateAt(task, step + 1);
                evaluatedAtEnd = last;
                log(new LogRecord(Phase.Valid, step + 1, options.Steps, valid.Loss, valid.Perplexity, null, null, valid.Tokens, valid.Stats,
                    clock.Elapsed.TotalSeconds, ProcessMemory.Now()));
            }
            if (options.CheckpointPath is { } path && (last || options.CheckpointEvery > 0 && (step + 1) % options.CheckpointEvery == 0))
            {
                Save(path, task, optimizer, data, fingerprint, step + 1, options.Steps);
                lastSaved = step + 1;
            }
        }
        if (!evaluatedAtEnd && task.Evaluate is not null)
        {
            valid = EvaluateAt(task, step);
            log(new LogRecord(Phase.Valid, step, options.Steps, valid.Loss, valid.Perplexity, null, null, valid.Tokens, valid.Stats,
                clock.Elapsed.TotalSeconds, ProcessMemory.Now()));
        }
        return new TrainResult(step, start, lastLoss, valid, Interrupted: false, skipped);
    }

    /// <summary>What one step did: its figures, or the fault that kept its update from the parameters.</summary>
    readonly record struct StepTaken(double Loss, double GradNorm, long Tokens, SolverStats? Stats, string? Fault, string Hint);

    /// <summary>
    /// Loss, backward, clipping and the Adam update of one step, all inside one DisposeScope. A non-finite or
    /// diverged loss, a faulted adjoint or a non-finite gradient is returned as the fault before optimizer.step.
    /// </summary>
    static StepTaken TakeStep(TrainingTask task, Adam optimizer, IReadOnlyList<Parameter> parameters, TrainOptions options, StepContext context)
    {
        string hint = $"Lower the learning rate (now {options.LearningRate:G3}) or check the model and data";
        using var scope = torch.NewDisposeScope();
        // Inside the scope: zero_grad reads each parameter's grad through a new handle, freed here rather than
        // by the GC (issue #11).
        optimizer.zero_grad();
        var output = task.Step(context);
        double loss = output.Loss.ToDouble();
        StepTaken Fault(string fault, double gradNorm = double.NaN, string? why = null) => new(loss, gradNorm, output.Tokens, null, fault, why ?? hint);
        if (!double.IsFinite(loss)) return Fault($"the loss is {loss}");
        if (loss > options.MaxLoss) return Fault($"the loss is {loss:G4}, above TrainOptions.MaxLoss {options.MaxLoss:G4} (the run diverged)");
        if (Backward(output.Loss, context.Step) is { } adjoint)
            return Fault(adjoint, why: "Check f and the adjoint's solver (deq: --forward-solver, --backward-iters, --backward-tol)");
        double gradNorm = ClipGradients(parameters, options.ClipNorm);
        if (!double.IsFinite(gradNorm)) return Fault($"the gradient norm is {gradNorm}", gradNorm);
        optimizer.step();
        return new StepTaken(loss, gradNorm, output.Tokens, output.Stats?.Invoke(), null, hint);
    }

    static InvalidOperationException Stopped(TrainOptions options, long step, string fault, string hint, int inARow, long? lastSaved) => new(
        $"step {step + 1}: {fault}; its update was not applied" +
        (options.SkipNonFiniteSteps > 0 ? $" ({inARow} such steps in a row, more than the {options.SkipNonFiniteSteps} that --skip-nonfinite allows)" : "") +
        (lastSaved is { } saved ? $"; checkpoint {options.CheckpointPath} (step {saved}) is kept" : "") +
        $". {hint}" +
        (options.SkipNonFiniteSteps > 0 ? "." : "; --skip-nonfinite (TrainOptions.SkipNonFiniteSteps) skips such steps instead."));

    static EvalOutput EvaluateAt(TrainingTask task, long step)
    {
        try { return Evaluate(task); }
        catch (InvalidOperationException e) { throw new InvalidOperationException($"evaluation after step {step}: {e.Message}", e); }
    }

    /// <summary>
    /// Backpropagates the step's loss with <see cref="Equilibrium.Backward"/>, so a faulted adjoint solve surfaces
    /// here, at its step, instead of leaving a zero gradient: it is returned as the step's fault (stopping the run,
    /// or skipped under <see cref="TrainOptions.SkipNonFiniteSteps"/>). Any other failure stops the run, naming the step.
    /// </summary>
    static string? Backward(Tensor loss, long step)
    {
        try
        {
            Equilibrium.Backward(loss);
            return null;
        }
        catch (ImplicitBackwardException e) { return e.Message; }
        catch (Exception e) when (e is not OperationCanceledException)
        {
            throw new InvalidOperationException($"step {step + 1}: backward failed: {e.Message}", e);
        }
    }

    /// <summary>
    /// The global gradient norm before clipping; clips to <paramref name="clip"/> when positive. With 0 the norm
    /// is only measured (no max_norm is passed on, so nothing overflows a float32 gradient).
    /// </summary>
    static double ClipGradients(IReadOnlyList<Parameter> parameters, double clip)
    {
        if (clip > 0) return torch.nn.utils.clip_grad_norm_(parameters, clip);
        var norms = parameters.Select(p => p.grad).Where(g => g is not null).Select(g => torch.linalg.vector_norm(g!).to(ScalarType.Float64)).ToArray();
        return norms.Length == 0 ? 0 : torch.linalg.vector_norm(torch.stack(norms)).ToDouble();
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
            if (!double.IsFinite(result.TotalNll) || !double.IsFinite(result.Perplexity))
                throw new InvalidOperationException($"the validation loss is {result.Loss:G4} (perplexity {result.Perplexity}): the model diverged; lower the learning rate.");
            return result;
        }
        finally { task.Module.train(); }
    }

    /// <summary>The step a checkpoint was written at, its run's total steps and configuration fields (verifies the file).</summary>
    public static CheckpointInfo Inspect(string path)
    {
        var s = CheckpointFile.Read(path);
        var fields = Fingerprint.FromBytes(Section(s, path, "fingerprint"));
        return new CheckpointInfo(BitConverter.ToInt64(Section(s, path, "step")), SavedTotal(s, fields), WithoutSteps(fields));
    }

    /// <summary>The total steps a checkpoint's run was given: its own section, or the fingerprint field older files kept.</summary>
    static long SavedTotal(IReadOnlyDictionary<string, byte[]> sections, IReadOnlyDictionary<string, string> fields) =>
        sections.TryGetValue("total_steps", out var b) ? BitConverter.ToInt64(b)
            : fields.TryGetValue("train.steps", out var v) && long.TryParse(v, out var n) ? n : 0;

    static IReadOnlyDictionary<string, string> WithoutSteps(IReadOnlyDictionary<string, string> fields) =>
        fields.Where(kv => kv.Key != "train.steps").ToDictionary(kv => kv.Key, kv => kv.Value, StringComparer.Ordinal);

    static IReadOnlyDictionary<string, string> ParameterShapes(nn.Module module) =>
        new SortedDictionary<string, string> { ["model.parameters"] = string.Join(";", module.named_parameters().Select(p => $"{p.name}[{string.Join(",", p.parameter.shape)}]:{p.parameter.dtype}")) };

    static void Save(string path, TrainingTask task, Adam optimizer, Generator data, IReadOnlyDictionary<string, string> fingerprint, long step, long totalSteps)
    {
        var sections = new List<(string, byte[])>
        {
            ("fingerprint", Fingerprint.ToBytes(fingerprint)),
            ("step", BitConverter.GetBytes(step)),
            ("total_steps", BitConverter.GetBytes(totalSteps)),
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
        // Files written before the step budget left the fingerprint still carry train.steps: ignored.
        var saved = WithoutSteps(Fingerprint.FromBytes(Section(s, path, "fingerprint")));
        var diff = Fingerprint.Diff(saved, fingerprint);
        if (diff.Count > 0)
            throw new InvalidOperationException($"checkpoint {path} was written by another configuration; it differs in {string.Join("; ", diff)}. " +
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
