using Deq.Data;
using TorchSharp;
using static TorchSharp.torch;

namespace Deq.Training;

/// <summary>How a language model meets a corpus.</summary>
/// <param name="Train">Training batch and BPTT segment length.</param>
/// <param name="EvalBatch">Columns of the validation stream.</param>
/// <param name="EvalSegmentLength">Segment length for evaluation (0: the training length).</param>
/// <param name="EvalSegments">Evaluate only the first this many segments (0: the whole validation split).</param>
public sealed record LanguageModelTaskOptions(SegmentOptions? Train = null, int EvalBatch = 10, int EvalSegmentLength = 0, int EvalSegments = 0)
{
    /// <summary>Training segments (default batch 20, length 35).</summary>
    public SegmentOptions TrainSegments => Train ?? new SegmentOptions();

    /// <summary>Throws an <see cref="ArgumentOutOfRangeException"/> naming the first bad option.</summary>
    public LanguageModelTaskOptions Validate()
    {
        TrainSegments.Validate();
        if (EvalBatch <= 0) throw new ArgumentOutOfRangeException(nameof(EvalBatch), EvalBatch, "LanguageModelTaskOptions.EvalBatch must be positive.");
        if (EvalSegmentLength < 0) throw new ArgumentOutOfRangeException(nameof(EvalSegmentLength), EvalSegmentLength, "LanguageModelTaskOptions.EvalSegmentLength must be non-negative.");
        if (EvalSegments < 0) throw new ArgumentOutOfRangeException(nameof(EvalSegments), EvalSegments, "LanguageModelTaskOptions.EvalSegments must be non-negative.");
        return this;
    }
}

/// <summary>
/// Word-level language modelling as a <see cref="TrainingTask"/>: step k trains on segment k mod n of the
/// batchified training split, carrying the model's memory (detached) from segment to segment and resetting
/// it at the start of each pass; evaluation runs the validation split the same way from empty memory.
/// </summary>
public static class LanguageModelTask
{
    /// <summary>The task for <paramref name="model"/> on <paramref name="corpus"/>.</summary>
    public static TrainingTask Create(LanguageModel model, Corpus corpus, LanguageModelTaskOptions? options = null)
    {
        options = (options ?? new LanguageModelTaskOptions()).Validate();
        var seg = options.TrainSegments;
        var device = model.Module.parameters().First().device;
        var train = Batching.Batchify(corpus.Train, seg.Batch, device);
        var valid = Batching.Batchify(corpus.Valid, options.EvalBatch, device);
        int segments = Batching.SegmentCount(train, seg.Length);
        int evalLength = options.EvalSegmentLength > 0 ? options.EvalSegmentLength : seg.Length;
        Tensor? memory = null;

        StepOutput Step(StepContext ctx)
        {
            int index = (int)(ctx.Step % segments);
            if (index == 0) { memory?.Dispose(); memory = null; }
            var (input, target) = Batching.Segment(train, index, seg.Length);
            var output = model.Forward(input, memory, ctx);
            var next = output.Memory?.detach();
            memory?.Dispose();
            memory = next?.MoveToOuterDisposeScope();
            var loss = output.Loss(target);
            return new StepOutput(loss, target.NumberOfElements, output.Stats);
        }

        EvalOutput Evaluate()
        {
            double nll = 0;
            long tokens = 0;
            Tensor? mem = null;
            int count = Batching.SegmentCount(valid, evalLength);
            if (options.EvalSegments > 0) count = Math.Min(count, options.EvalSegments);
            for (int i = 0; i < count; i++)
            {
                using var scope = torch.NewDisposeScope();
                var (input, target) = Batching.Segment(valid, i, evalLength);
                var output = model.Forward(input, mem, null);
                var sum = output.Loss(target, nn.Reduction.Sum);
                nll += sum.ToDouble();
                tokens += target.NumberOfElements;
                mem?.Dispose();
                mem = output.Memory?.detach().MoveToOuterDisposeScope();
            }
            mem?.Dispose();
            return new EvalOutput(nll, tokens);
        }

        var state = new TaskState(
            Save: () => memory is null ? new Dictionary<string, Tensor>() : new Dictionary<string, Tensor> { ["memory"] = memory },
            Load: s => { memory?.Dispose(); memory = s.TryGetValue("memory", out var m) ? m : null; });

        var fingerprint = Fingerprint.Merge(model.Config, new Dictionary<string, string>
        {
            ["data.corpus"] = corpus.Name,
            ["data.vocab"] = corpus.Vocabulary.Count.ToString(),
            ["data.train_tokens"] = corpus.Train.shape[0].ToString(),
            ["data.batch"] = seg.Batch.ToString(),
            ["data.bptt"] = seg.Length.ToString(),
        });
        return new TrainingTask(model.Module, Step, Evaluate, state, fingerprint);
    }
}
