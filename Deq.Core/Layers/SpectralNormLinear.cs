using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Deq.Layers;

/// <summary>
/// A linear map y = x (W / sigma(W))^T + b with a spectrally normalised weight (see <see cref="SpectralNorm"/>).
/// Use <see cref="Bind"/> once per solve: it advances the power iteration (in training) and normalises once.
/// </summary>
public sealed class SpectralNormLinear : nn.Module
{
    /// <summary>The raw weight [out, in].</summary>
    public readonly Parameter weight;
    /// <summary>Bias; null when built without one.</summary>
    public readonly Parameter? bias;
    /// <summary>The power-iteration vector [out] (a buffer: saved with the module, never trained).</summary>
    public readonly Tensor weight_u;

    /// <summary>Input width.</summary>
    public long InFeatures { get; }
    /// <summary>Output width.</summary>
    public long OutFeatures { get; }
    /// <summary>Power steps per Bind in training (none in evaluation, where u is kept as it is).</summary>
    public int PowerIterations { get; }

    /// <summary>Weights from N(0, initStd), bias zero; <paramref name="powerIterations"/> power steps per Bind.</summary>
    public SpectralNormLinear(long inFeatures, long outFeatures, bool hasBias = true, double initStd = 0.05, int powerIterations = 1)
        : base(nameof(SpectralNormLinear))
    {
        if (inFeatures < 1 || outFeatures < 1)
            throw new ArgumentOutOfRangeException(nameof(inFeatures), $"SpectralNormLinear needs positive sizes; got {inFeatures} -> {outFeatures}.");
        if (powerIterations < 1)
            throw new ArgumentOutOfRangeException(nameof(powerIterations), powerIterations, "SpectralNormLinear needs at least one power iteration per Bind.");
        (InFeatures, OutFeatures, PowerIterations) = (inFeatures, outFeatures, powerIterations);
        weight = new Parameter(torch.randn(outFeatures, inFeatures) * initStd);
        weight_u = SpectralNorm.InitialVector(outFeatures);
        if (hasBias) bias = new Parameter(torch.zeros(outFeatures));
        RegisterComponents();
    }

    /// <summary>W / sigma(W), advancing u by the power steps when training.</summary>
    public Tensor Weight() => SpectralNorm.Apply(weight, weight_u, training ? PowerIterations : 0);

    /// <summary>x -> x W^T + b with the normalised W computed once, now (once per solve).</summary>
    public Func<Tensor, Tensor> Bind()
    {
        var w = Weight();
        return x =>
        {
            if (x.shape[^1] != InFeatures)
                throw new ArgumentException($"SpectralNormLinear expects last dimension {InFeatures}; got shape [{string.Join(", ", x.shape)}].", nameof(x));
            return nn.functional.linear(x, w, bias);
        };
    }
}
