namespace Deq.Training;

/// <summary>
/// Optimisation and bookkeeping for one run. Every field that changes the trajectory is in the checkpoint
/// fingerprint, except <paramref name="Steps"/>, so a finished run can be extended by resuming it with more.
/// </summary>
/// <param name="Steps">
/// Optimiser steps in the whole run. The cosine schedule is a function of the step and this total, so
/// extending a run (resuming with a larger value) changes the rates of the steps still to come: they are
/// the rates a run of the new length would use at those steps (the rate rises again from where the shorter
/// schedule had decayed it to). The steps already taken keep the rates they had.
/// </param>
/// <param name="LearningRate">Peak Adam learning rate.</param>
/// <param name="WarmupSteps">Linear warmup steps.</param>
/// <param name="MinLearningRate">Rate at the end of the cosine decay.</param>
/// <param name="Beta1">Adam beta1.</param>
/// <param name="Beta2">Adam beta2.</param>
/// <param name="WeightDecay">Adam L2 penalty.</param>
/// <param name="ClipNorm">Clip the global gradient norm to this (0: no clipping).</param>
/// <param name="Seed">Seeds torch's global generator and the data-order generator: one seed, one run.</param>
/// <param name="EvalEvery">Evaluate every this many steps (0: only at the end).</param>
/// <param name="CheckpointPath">Where checkpoints go (null: none).</param>
/// <param name="CheckpointEvery">Write a checkpoint every this many steps (0: only at the end or on interruption).</param>
/// <param name="Resume">Continue from <paramref name="CheckpointPath"/> when it exists; when it does not, the run starts afresh (<see cref="Trainer.CheckCheckpoint"/> says which).</param>
/// <param name="Overwrite">A fresh run (no <paramref name="Resume"/>) may replace an existing checkpoint; without it, that is refused.</param>
/// <param name="SkipNonFiniteSteps">
/// Skip up to this many consecutive steps whose loss or gradient is not finite, or whose adjoint solve faulted
/// (<see cref="Implicit.ImplicitBackwardException"/>): their update is dropped and a <see cref="Phase.Skipped"/> record is logged. 0 (the default)
/// stops at the first such step. Not in the fingerprint: it changes nothing until it triggers.
/// </param>
/// <param name="MaxLoss">
/// A finite loss above this stops the run as diverged (it counts as non-finite for <paramref name="SkipNonFiniteSteps"/>).
/// The default, ln(double.MaxValue) ≈ 709.8, is where the logged perplexity exp(loss) overflows; raise it for a
/// task whose loss is a sum rather than a mean.
/// </param>
public sealed record TrainOptions(
    int Steps = 1000,
    double LearningRate = 1e-3,
    int WarmupSteps = 0,
    double MinLearningRate = 0,
    double Beta1 = 0.9,
    double Beta2 = 0.999,
    double WeightDecay = 0,
    double ClipNorm = 0.25,
    long Seed = 0,
    int EvalEvery = 0,
    string? CheckpointPath = null,
    int CheckpointEvery = 0,
    bool Resume = false,
    bool Overwrite = false,
    int SkipNonFiniteSteps = 0,
    double MaxLoss = 709.782712893384)
{
    /// <summary>Throws an <see cref="ArgumentOutOfRangeException"/> naming the first bad option.</summary>
    public TrainOptions Validate()
    {
        static void Check(bool ok, string name, object value, string rule)
        {
            if (!ok) throw new ArgumentOutOfRangeException(name, value, $"TrainOptions.{name} {rule}, got {value}.");
        }
        Check(Steps > 0, nameof(Steps), Steps, "must be positive");
        Check(LearningRate > 0 && double.IsFinite(LearningRate), nameof(LearningRate), LearningRate, "must be a positive finite number");
        Check(WarmupSteps >= 0 && WarmupSteps <= Steps, nameof(WarmupSteps), WarmupSteps, "must be in [0, Steps]");
        Check(MinLearningRate >= 0 && MinLearningRate <= LearningRate, nameof(MinLearningRate), MinLearningRate, "must be in [0, LearningRate]");
        Check(Beta1 >= 0 && Beta1 < 1, nameof(Beta1), Beta1, "must be in [0, 1)");
        Check(Beta2 >= 0 && Beta2 < 1, nameof(Beta2), Beta2, "must be in [0, 1)");
        Check(WeightDecay >= 0 && double.IsFinite(WeightDecay), nameof(WeightDecay), WeightDecay, "must be non-negative");
        Check(ClipNorm >= 0 && double.IsFinite(ClipNorm), nameof(ClipNorm), ClipNorm, "must be non-negative (0 disables clipping)");
        Check(EvalEvery >= 0, nameof(EvalEvery), EvalEvery, "must be non-negative");
        Check(CheckpointEvery >= 0, nameof(CheckpointEvery), CheckpointEvery, "must be non-negative");
        Check(SkipNonFiniteSteps >= 0, nameof(SkipNonFiniteSteps), SkipNonFiniteSteps, "must be non-negative");
        Check(MaxLoss > 0 && !double.IsNaN(MaxLoss), nameof(MaxLoss), MaxLoss, "must be positive");
        if (Resume && CheckpointPath is null)
            throw new ArgumentException("TrainOptions.Resume needs TrainOptions.CheckpointPath.", nameof(Resume));
        return this;
    }

    /// <summary>
    /// Throws an <see cref="ArgumentOutOfRangeException"/> when a rate or bound does not fit the parameters'
    /// floating-point type (Adam and clipping compute in it: 1e39 is finite as a double but not as a float32).
    /// </summary>
    public TrainOptions ValidateFor(TorchSharp.torch.ScalarType dtype)
    {
        double largest = dtype switch
        {
            TorchSharp.torch.ScalarType.Float16 => 65504,
            TorchSharp.torch.ScalarType.BFloat16 => 3.3895313892515355e38,
            TorchSharp.torch.ScalarType.Float32 => float.MaxValue,
            _ => double.MaxValue,
        };
        foreach (var (name, value) in new[] { (nameof(LearningRate), LearningRate), (nameof(ClipNorm), ClipNorm), (nameof(WeightDecay), WeightDecay) })
            if (value > largest)
                throw new ArgumentOutOfRangeException(name, value,
                    $"TrainOptions.{name} {value:G3} overflows the parameters' {dtype} (largest {largest:G3}); choose a smaller value.");
        return this;
    }

    /// <summary>
    /// The fields that shape the trajectory, as text, for the checkpoint fingerprint. <see cref="Steps"/> is
    /// left out so that a finished run can be extended.
    /// </summary>
    public IReadOnlyDictionary<string, string> Fingerprint() => new SortedDictionary<string, string>
    {
        ["train.lr"] = LearningRate.ToString("R"),
        ["train.warmup"] = WarmupSteps.ToString(),
        ["train.min_lr"] = MinLearningRate.ToString("R"),
        ["train.beta1"] = Beta1.ToString("R"),
        ["train.beta2"] = Beta2.ToString("R"),
        ["train.weight_decay"] = WeightDecay.ToString("R"),
        ["train.clip"] = ClipNorm.ToString("R"),
        ["train.seed"] = Seed.ToString(),
    };
}
