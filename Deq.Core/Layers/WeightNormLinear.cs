using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Deq.Layers;

/// <summary>
/// A linear map y = x W^T + b whose weight is optionally weight-normalised (W = g v / ||v||, per output row).
/// <see cref="Forward"/> recomputes the weight on every call; inside a solve, where f runs dozens of
/// times on the same parameters, <see cref="Bind"/> computes it once and reuses it.
/// </summary>
public sealed class WeightNormLinear : nn.Module
{
    /// <summary>The weight v (the direction when weight norm is on; the weight itself otherwise).</summary>
    public readonly Parameter weight;
    /// <summary>Per-output scale g; null without weight norm.</summary>
    public readonly Parameter? weight_g;
    /// <summary>Bias; null when built without one.</summary>
    public readonly Parameter? bias;

    /// <summary>Input width.</summary>
    public long InFeatures { get; }
    /// <summary>Output width.</summary>
    public long OutFeatures { get; }
    /// <summary>Whether the weight is normalised.</summary>
    public bool Normalised => weight_g is not null;

    /// <summary>A linear map; weights from N(0, initStd), bias zero (the DEQ reference's initialisation).</summary>
    public WeightNormLinear(long inFeatures, long outFeatures, bool hasBias = true, bool weightNorm = false, double initStd = 0.05)
        : base(nameof(WeightNormLinear))
    {
        if (inFeatures < 1 || outFeatures < 1)
            throw new ArgumentOutOfRangeException(nameof(inFeatures), $"WeightNormLinear needs positive sizes; got {inFeatures} -> {outFeatures}.");
        InFeatures = inFeatures;
        OutFeatures = outFeatures;
        weight = new Parameter(torch.randn(outFeatures, inFeatures) * initStd);
        if (weightNorm) weight_g = new Parameter(WeightNorm.InitialScale(weight));
        if (hasBias) bias = new Parameter(torch.zeros(outFeatures));
        RegisterComponents();
    }

    /// <summary>The effective weight [out, in].</summary>
    public Tensor Weight() => weight_g is null ? weight : WeightNorm.Apply(weight_g, weight);

    /// <summary>
    /// x -> x W^T + b with W computed once, now: call it once per solve (per Bind of f). When grad is on,
    /// W stays on the tape, so gradients still reach g and v through every use; parameters changed
    /// afterwards (an optimizer step) need a new Bind.
    /// </summary>
    public Func<Tensor, Tensor> Bind()
    {
        var w = Weight();
        return x =>
        {
            CheckWidth(x);
            return nn.functional.linear(x, w, bias);
        };
    }

    void CheckWidth(Tensor x)
    {
        if (x.shape[^1] != InFeatures)
            throw new ArgumentException($"WeightNormLinear expects last dimension {InFeatures}; got shape [{string.Join(", ", x.shape)}].", nameof(x));
    }

    /// <summary>x W^T + b over the last dimension.</summary>
    public Tensor Forward(Tensor x)
    {
        CheckWidth(x);
        return nn.functional.linear(x, Weight(), bias);
    }
}
