using TorchSharp;
using static TorchSharp.torch;

namespace Deq.Layers;

/// <summary>Transformer-XL's sinusoidal embedding of relative distances.</summary>
public static class SinusoidalPositions
{
    /// <summary>
    /// Embeddings [K, d] of the distances K-1, K-2, ..., 0 (the order the rel-shift expects):
    /// row j is [sin(r_j w); cos(r_j w)] with w_i = 1 / 10000^(2i/d).
    /// </summary>
    public static Tensor Relative(long klen, long d, ScalarType dtype, Device device)
    {
        if (d % 2 != 0) throw new ArgumentException($"The positional embedding width must be even; got {d}.", nameof(d));
        using var scope = torch.NewDisposeScope();
        var pos = torch.arange(klen - 1, -1, -1.0, dtype: dtype, device: device);
        var invFreq = 1.0 / torch.pow(10000.0, torch.arange(0.0, d, 2.0, dtype: dtype, device: device) / d);
        var angles = torch.outer(pos, invFreq);
        return torch.cat([angles.sin(), angles.cos()], 1).MoveToOuterDisposeScope();
    }
}
