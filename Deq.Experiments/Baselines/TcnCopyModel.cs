using Deq.Layers;
using Deq.Models;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Deq.Experiments.Baselines;

/// <summary>
/// One residual block of a temporal convolutional network (Bai, Kolter and Koltun 2018): two weight-normalised dilated
/// causal convolutions with ReLU and dropout, plus the identity (channels stay the same through the network).
/// </summary>
public sealed class TemporalBlock : nn.Module
{
    readonly Parameter v1, g1, b1, v2, g2, b2;
    readonly long _dilation, _kernel;
    readonly double _dropout;

    /// <summary>A block of <paramref name="channels"/> channels, kernel <paramref name="kernel"/>, dilation <paramref name="dilation"/>; weights from N(0, 0.01) as the TCN reference.</summary>
    public TemporalBlock(long channels, long kernel, long dilation, double dropout) : base(nameof(TemporalBlock))
    {
        (_kernel, _dilation, _dropout) = (kernel, dilation, dropout);
        Parameter V() => new(torch.randn(channels, channels, kernel) * 0.01);
        v1 = V(); g1 = new Parameter(WeightNorm.InitialScale(v1)); b1 = new Parameter(torch.zeros(channels));
        v2 = V(); g2 = new Parameter(WeightNorm.InitialScale(v2)); b2 = new Parameter(torch.zeros(channels));
        RegisterComponents();
    }

    Tensor Conv(Tensor x, Tensor v, Tensor g, Tensor b)
    {
        // Left padding only: output t sees inputs t - (k-1) d .. t.
        var padded = nn.functional.pad(x, [(_kernel - 1) * _dilation, 0]);
        var y = nn.functional.conv1d(padded, WeightNorm.Apply(g, v), b, dilation: _dilation);
        return nn.functional.dropout(nn.functional.relu(y), _dropout, training);
    }

    /// <summary>[B, C, T] -> [B, C, T].</summary>
    public Tensor Forward(Tensor x) => nn.functional.relu(Conv(Conv(x, v1, g1, b1), v2, g2, b2) + x);
}

/// <summary>
/// Table 1's TCN baseline: symbol embedding, <see cref="Levels"/> temporal blocks with dilations 1, 2, 4, ..., and a
/// linear classifier on the last 10 positions (logits [B, 10, 10], as <see cref="CopyMemoryModel"/>). The paper gives
/// its TCN 16K parameters and no sizes; ours picks the channels for a parameter budget and the levels for a receptive
/// field that covers the sequence.
/// </summary>
public sealed class TcnCopyModel : nn.Module
{
    readonly Embedding embedding;
    readonly ModuleList<TemporalBlock> blocks;
    readonly Linear classifier;

    /// <summary>Channels of every block.</summary>
    public int Channels { get; }
    /// <summary>Blocks.</summary>
    public int Levels { get; }
    /// <summary>Kernel size.</summary>
    public int Kernel { get; }

    /// <summary>Builds the TCN; a clear error names a non-positive size.</summary>
    public TcnCopyModel(int channels, int levels, int kernel = 8, double dropout = 0.0) : base(nameof(TcnCopyModel))
    {
        if (channels < 1 || levels < 1 || kernel < 2)
            throw new ArgumentOutOfRangeException(nameof(channels), $"TcnCopyModel needs channels >= 1, levels >= 1, kernel >= 2; got {channels}, {levels}, {kernel}.");
        (Channels, Levels, Kernel) = (channels, levels, kernel);
        embedding = nn.Embedding(CopyMemoryModel.Vocabulary, channels);
        blocks = nn.ModuleList(Enumerable.Range(0, levels).Select(i => new TemporalBlock(channels, kernel, 1L << i, dropout)).ToArray());
        classifier = nn.Linear(channels, CopyMemoryModel.Vocabulary);
        RegisterComponents();
    }

    /// <summary>Positions one output sees: 1 + 2 (k - 1)(2^levels - 1).</summary>
    public static long ReceptiveField(int levels, int kernel) => 1 + 2L * (kernel - 1) * ((1L << levels) - 1);

    /// <summary>The fewest levels whose receptive field covers <paramref name="length"/> positions.</summary>
    public static int LevelsFor(int length, int kernel)
    {
        int levels = 1;
        while (ReceptiveField(levels, kernel) < length) levels++;
        return levels;
    }

    /// <summary>Parameters: embedding, per block two convolutions (weights, per-channel norm scales, biases), classifier.</summary>
    public static long ParameterCount(int channels, int levels, int kernel)
    {
        long c = channels, v = CopyMemoryModel.Vocabulary;
        return v * c + levels * 2L * (c * c * kernel + 2 * c) + c * v + v;
    }

    /// <summary>The most channels whose <see cref="ParameterCount"/> does not exceed <paramref name="budget"/> (at least 1).</summary>
    public static int ChannelsFor(long budget, int levels, int kernel)
    {
        int c = 1;
        while (ParameterCount(c + 1, levels, kernel) <= budget) c++;
        return c;
    }

    /// <summary>Features [B, T+20, C] of inputs [B, T+20]: position t depends on inputs 0..t only.</summary>
    public Tensor Features(Tensor inputs)
    {
        if (inputs.dim() != 2)
            throw new ArgumentException($"Copy memory expects inputs [B, T+20]; got [{string.Join(", ", inputs.shape)}].", nameof(inputs));
        var h = embedding.forward(inputs).transpose(1, 2);
        foreach (var block in blocks) h = block.Forward(h);
        return h.transpose(1, 2);
    }

    /// <summary>Logits [B, 10, 10] for the last 10 positions of inputs [B, T+20].</summary>
    public Tensor Forward(Tensor inputs)
    {
        if (inputs.dim() != 2 || inputs.shape[1] < CopyMemoryModel.Digits)
            throw new ArgumentException($"Copy memory expects inputs [B, T+20]; got [{string.Join(", ", inputs.shape)}].", nameof(inputs));
        var h = Features(inputs);
        return classifier.forward(h.narrow(1, h.shape[1] - CopyMemoryModel.Digits, CopyMemoryModel.Digits));
    }
}
