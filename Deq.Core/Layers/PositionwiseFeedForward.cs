using TorchSharp;
using static TorchSharp.torch;
using static Deq.Layers.Temporaries;

namespace Deq.Layers;

/// <summary>
/// The Transformer's position-wise feed-forward sublayer, arranged as in the DEQ reference:
/// post-LN: LN(x + W2 drop(relu(W1 x))); pre-LN: y + W2 drop(relu(W1 y)) with y = LN(x).
/// </summary>
public sealed class PositionwiseFeedForward : nn.Module
{
    /// <summary>d_model -> d_inner.</summary>
    public readonly WeightNormLinear ff1_net;
    /// <summary>d_inner -> d_model.</summary>
    public readonly WeightNormLinear ff2_net;

    /// <summary>Layer norm before (true) or after (false) the residual.</summary>
    public bool PreLayerNorm { get; }

    /// <summary>Builds the sublayer; weights from N(0, initStd), biases zero.</summary>
    public PositionwiseFeedForward(long dModel, long dInner, bool preLayerNorm = false, bool weightNorm = false, double initStd = 0.05)
        : base(nameof(PositionwiseFeedForward))
    {
        PreLayerNorm = preLayerNorm;
        ff1_net = new WeightNormLinear(dModel, dInner, hasBias: true, weightNorm, initStd);
        ff2_net = new WeightNormLinear(dInner, dModel, hasBias: true, weightNorm, initStd);
        RegisterComponents();
    }

    /// <summary>Applies the sublayer to [B, T, d_model] with fixed dropout masks (null: none) for the inner and outer activations.</summary>
    public Tensor Forward(Tensor x, Tensor? innerMask = null, Tensor? outMask = null)
    {
        // The d_inner activation (4 copies of z at the usual width) is freed as soon as ff2 has read it, and
        // with grad off the activation, masks and residual run in place.
        using var scope = torch.NewDisposeScope();
        bool inPlace = !torch.is_grad_enabled();
        var input = PreLayerNorm ? LayerNorms.Plain(x) : x;
        var hidden = ff1_net.Forward(input);
        hidden = inPlace ? hidden.relu_() : Replace(hidden, nn.functional.relu(hidden));
        if (innerMask is not null) hidden = inPlace ? hidden.mul_(innerMask) : Replace(hidden, hidden * innerMask);
        var output = Replace(hidden, ff2_net.Forward(hidden));
        if (outMask is not null) output = inPlace ? output.mul_(outMask) : Replace(output, output * outMask);
        var residual = inPlace ? output.add_(input) : Replace(output, output + input);
        var result = PreLayerNorm ? residual : Replace(residual, LayerNorms.Plain(residual));
        return scope.MoveToOuter(result);
    }
}
