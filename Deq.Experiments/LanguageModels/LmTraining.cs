using System.Diagnostics;
using Deq.Data;
using Deq.Training;
using TorchSharp;
using static TorchSharp.torch;

namespace Deq.Experiments;

/// <summary>The training budget a language-model experiment gives each contender (all get the same).</summary>
/// <param name="Steps">Optimiser steps.</param>
/// <param name="Batch">Training batch (columns of the stream).</param>
/// <param name="SeqLen">Training (and evaluation) segment length.</param>
/// <param name="LearningRate">Peak Adam rate (linear warmup, cosine decay to a tenth).</param>
/// <param name="WarmupSteps">Linear warmup steps.</param>
/// <param name="EvalBatch">Columns of the evaluation stream.</param>
/// <param name="EvalSegments">Evaluate on the first this many segments of the split (0: all of it).</param>
/// <param name="Seed">Initialisation and data seed.</param>
public sealed record LmBudget(int Steps = 200, int Batch = 16, int SeqLen = 32, double LearningRate = 2e-3, int WarmupSteps = 20,
    int EvalBatch = 10, int EvalSegments = 20, long Seed = 0);

/// <summary>One trained contender.</summary>
/// <param name="Label">Our row label.</param>
/// <param name="Config">Its sizes and schedule, in words.</param>
/// <param name="Parameters">All parameters (embedding included; tied tables counted once).</param>
/// <param name="NonEmbedding">Parameters of the equilibrium core only (the paper's "non-embedding model size").</param>
/// <param name="Steps">Training steps taken.</param>
/// <param name="FinalTrainLoss">Loss of the last training step.</param>
/// <param name="TestPerplexity">exp(mean NLL) on the evaluated test segments.</param>
/// <param name="TestTokens">Tokens those segments hold.</param>
/// <param name="Seconds">Training and evaluation wall time.</param>
public sealed record LmRun(string Label, string Config, long Parameters, long NonEmbedding, int Steps, double FinalTrainLoss,
    double TestPerplexity, long TestTokens, double Seconds);

/// <summary>Training a contender with the shared trainer and measuring its test perplexity.</summary>
public static class LmTraining
{
    /// <summary>
    /// Builds the model with <paramref name="factory"/>, trains it for <see cref="LmBudget.Steps"/> steps on the training split
    /// (carrying memory across segments) and evaluates it on the first <see cref="LmBudget.EvalSegments"/> segments of the
    /// test split. Returns the trained model (the caller disposes its module) and the figures.
    /// </summary>
    public static (LanguageModel Model, LmRun Run) Train(string label, string config, Func<LanguageModelSpec, LanguageModel> factory,
        Corpus corpus, LmBudget budget, Device? device = null)
    {
        var clock = Stopwatch.StartNew();
        var model = factory(new LanguageModelSpec(corpus.Vocabulary.Count, device ?? ExperimentDevice.Default, Seed: budget.Seed));
        // The trainer's closing evaluation runs on the task's "validation" stream: here the test split.
        var task = LanguageModelTask.Create(model, corpus with { Valid = corpus.Test }, new LanguageModelTaskOptions(
            new SegmentOptions(budget.Batch, budget.SeqLen), budget.EvalBatch, budget.SeqLen, budget.EvalSegments));
        int every = Math.Max(1, budget.Steps / 5);
        void Log(LogRecord r)
        {
            if (r.Phase == Phase.Train && (r.Step % every == 0 || r.Step == 1))
                Progress.Report($"  {label}: step {r.Step}/{r.TotalSteps} loss {r.Loss:F3}" +
                    (r.Solver?.ForwardSteps is { } f ? $" forward {f} steps" : "") + $" ({r.WallSeconds:F0} s)");
        }
        var result = Trainer.Run(task, new TrainOptions(Steps: budget.Steps, LearningRate: budget.LearningRate, WarmupSteps: budget.WarmupSteps,
            MinLearningRate: budget.LearningRate / 10, Seed: budget.Seed), Log);
        var test = result.Valid ?? throw new InvalidOperationException($"{label}: the trainer returned no evaluation.");
        Progress.Report($"  {label}: test ppl {test.Perplexity:F1} on {test.Tokens:N0} tokens ({clock.Elapsed.TotalSeconds:F0} s)");
        var (all, core) = Count(model.Module);
        return (model, new LmRun(label, config, all, core, budget.Steps, result.LastLoss ?? double.NaN, test.Perplexity, test.Tokens, clock.Elapsed.TotalSeconds));
    }

    /// <summary><see cref="Train"/>, then frees the model.</summary>
    public static LmRun TrainAndDispose(string label, string config, Func<LanguageModelSpec, LanguageModel> factory, Corpus corpus, LmBudget budget, Device? device = null)
    {
        var (model, run) = Train(label, config, factory, corpus, budget, device);
        model.Module.Dispose();
        return run;
    }

    /// <summary>All parameters, and those of the equilibrium core (DEQ models' "core" or "trellisnet" submodule).</summary>
    public static (long All, long Core) Count(nn.Module module)
    {
        var ps = module.named_parameters().ToList();
        long all = ps.Sum(p => p.parameter.numel());
        long core = ps.Where(p => p.name.StartsWith("core.") || p.name.StartsWith("trellisnet.")).Sum(p => p.parameter.numel());
        return (all, core);
    }

    /// <summary>A parameter count as the paper prints it: 24M, 4.5M, 14K.</summary>
    public static string Size(long n) => n switch
    {
        >= 10_000_000 => $"{n / 1e6:F0}M",
        >= 1_000_000 => $"{n / 1e6:F1}M",
        >= 10_000 => $"{n / 1e3:F0}K",
        >= 1_000 => $"{n / 1e3:F1}K",
        _ => n.ToString(),
    };
}
