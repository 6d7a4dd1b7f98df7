using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Deq.Layers;

/// <summary>
/// A causal temporal convolution of kernel size k over batch-first sequences [B, T, C]: output t sees
/// inputs t-k+1..t, where the k-1 positions before the segment come from an explicit left context
/// (the previous segment's tail), not zero padding. Optionally weight-normalised (per output channel).
/// </summary>
public sealed class CausalConv1d : nn.Module
{
    /// <summary>Weight (direction when normalised), [out, in, k].</summary>
    public readonly Parameter weight;
    /// <summary>Per-output-channel scale; null without weight norm.</summary>
    public readonly Parameter? weight_g;
    /// <summary>Bias [out].</summary>
    public readonly Parameter bias;

    /// <summary>Input channels.</summary>
    public long InChannels { get; }
    /// <summary>Output channels.</summary>
    public long OutChannels { get; }
    /// <summary>Kernel size k.</summary>
    public long KernelSize { get; }

    /// <summary>Weight and bias from N(0, initStd) (the TrellisNet reference draws both from a normal).</summary>
    public CausalConv1d(long inChannels, long outChannels, long kernelSize, bool weightNorm = false, double initStd = 0.05)
        : base(nameof(CausalConv1d))
    {
        if (inChannels < 1 || outChannels < 1 || kernelSize < 1)
            throw new ArgumentOutOfRangeException(nameof(kernelSize), $"CausalConv1d sizes must be positive; got {inChannels} -> {outChannels}, k {kernelSize}.");
        (InChannels, OutChannels, KernelSize) = (inChannels, outChannels, kernelSize);
        weight = new Parameter(torch.randn(outChannels, inChannels, kernelSize) * initStd);
        if (weightNorm) weight_g = new Parameter(WeightNorm.InitialScale(weight));
        bias = new Parameter(torch.randn(outChannels) * initStd);
        RegisterComponents();
    }

    /// <summary>The effective weight; <paramref name="dropConnect"/> (a mask shaped like the weight, or null) multiplies the direction first.</summary>
    public Tensor Weight(Tensor? dropConnect = null)
    {
        var v = dropConnect is null ? (Tensor)weight : weight * dropConnect;
        return weight_g is null ? v : WeightNorm.Apply(weight_g, v);
    }

    /// <summary>
    /// <see cref="Forward"/> in the convolution's own layout: <paramref name="x"/> [B, in, T] and <paramref name="left"/>
    /// [B, in, k-1] (views of any strides); returns [B, out, T], contiguous. No transposed copies either way.
    /// </summary>
    public Tensor ForwardChannelsFirst(Tensor x, Tensor left, Tensor? weightOverride = null)
    {
        if (x.dim() != 3 || x.shape[1] != InChannels)
            throw new ArgumentException($"CausalConv1d expects [B, {InChannels}, T] channels first; got [{string.Join(", ", x.shape)}].", nameof(x));
        if (!left.shape.SequenceEqual(new[] { x.shape[0], InChannels, KernelSize - 1 }))
            throw new ArgumentException($"CausalConv1d left context must be [{x.shape[0]}, {InChannels}, {KernelSize - 1}] channels first; got [{string.Join(", ", left.shape)}].", nameof(left));
        using var scope = torch.NewDisposeScope();
        var padded = KernelSize == 1 ? x : torch.cat([left, x], 2);
        return scope.MoveToOuter(nn.functional.conv1d(padded, weightOverride ?? Weight(), bias));
    }

    /// <summary>
    /// Convolves [left; x] with <paramref name="left"/> [B, k-1, in] and <paramref name="x"/> [B, T, in];
    /// returns [B, T, out]. <paramref name="weightOverride"/> replaces <see cref="Weight"/> (e.g. to reuse one per forward pass).
    /// </summary>
    public Tensor Forward(Tensor x, Tensor left, Tensor? weightOverride = null)
    {
        if (x.dim() != 3 || x.shape[2] != InChannels)
            throw new ArgumentException($"CausalConv1d expects [B, T, {InChannels}]; got [{string.Join(", ", x.shape)}].", nameof(x));
        if (!left.shape.SequenceEqual(new[] { x.shape[0], KernelSize - 1, InChannels }))
            throw new ArgumentException($"CausalConv1d left context must be [{x.shape[0]}, {KernelSize - 1}, {InChannels}]; got [{string.Join(", ", left.shape)}].", nameof(left));
        // The channels-first convolution on transposed views (the same values); only the output's view leaves this
        // scope, so its storage lives exactly as long as the view does (a caller that frees the view frees the memory).
        using var scope = torch.NewDisposeScope();
        return scope.MoveToOuter(ForwardChannelsFirst(x.transpose(1, 2), left.transpose(1, 2), weightOverride).transpose(1, 2));
    }
}
