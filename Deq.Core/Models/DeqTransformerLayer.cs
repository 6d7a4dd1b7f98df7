using Deq.Layers;
using TorchSharp;
using static TorchSharp.torch;

namespace Deq.Models;

/// <summary>The fixed dropout masks of one DEQ-Transformer forward pass (null entries: no dropout).</summary>
/// <param name="Attention">On the attention output projection, [B, 1, d_model].</param>
/// <param name="AttentionProbs">On the attention probabilities, [B, H, T, M+T].</param>
/// <param name="Inner">On the feed-forward hidden layer, [B, 1, d_inner].</param>
/// <param name="Output">On the feed-forward output, [B, 1, d_model].</param>
public sealed record TransformerMasks(Tensor? Attention, Tensor? AttentionProbs, Tensor? Inner, Tensor? Output)
{
    /// <summary>No dropout anywhere.</summary>
    public static TransformerMasks None { get; } = new(null, null, null, null);
}

/// <summary>
/// f of the DEQ-Transformer: relative multi-head self-attention over [memory; z] with the input
/// injection added to q/k/v, then the position-wise feed-forward net; layer norm placed as in the
/// reference (post-LN by default, pre-LN optional). One layer, applied until equilibrium.
/// </summary>
public sealed class DeqTransformerLayer : nn.Module
{
    /// <summary>The attention sublayer.</summary>
    public readonly RelativeMultiHeadAttention dec_attn;
    /// <summary>The feed-forward sublayer.</summary>
    public readonly PositionwiseFeedForward pos_ff;

    /// <summary>Builds f; parameters from N(0, initStd).</summary>
    public DeqTransformerLayer(long dModel, long nHead, long dHead, long dInner, bool preLayerNorm, bool weightNorm, double initStd)
        : base(nameof(DeqTransformerLayer))
    {
        dec_attn = new RelativeMultiHeadAttention(dModel, nHead, dHead, preLayerNorm, weightNorm, initStd);
        pos_ff = new PositionwiseFeedForward(dModel, dInner, preLayerNorm, weightNorm, initStd);
        RegisterComponents();
    }

    /// <summary>f(z; memory, injection): [B, T, d] -> [B, T, d].</summary>
    public Tensor Forward(Tensor z, Tensor memory, Tensor injection, Tensor positions, TransformerMasks masks) =>
        pos_ff.Forward(dec_attn.Forward(z, memory, injection, positions, masks.Attention, masks.AttentionProbs), masks.Inner, masks.Output);
}
