using TorchSharp;
using static TorchSharp.torch;

namespace Deq.Layers;

/// <summary>
/// Variational ("locked") dropout: a mask is sampled once per forward pass and reused by every
/// application of f, so f stays one fixed function while the solver iterates (the DEQ paper's
/// requirement). Masks are scaled by 1/(1-p); a null mask means "no dropout".
/// </summary>
public static class VariationalDropout
{
    /// <summary>
    /// A mask of the given shape (size-1 dimensions broadcast, e.g. [B, 1, C] locks it over time),
    /// on the device and dtype of <paramref name="like"/>; null when <paramref name="p"/> is 0 or not training.
    /// </summary>
    public static Tensor? Mask(long[] shape, double p, bool training, Tensor like)
    {
        if (!(p >= 0 && p < 1)) throw new ArgumentOutOfRangeException(nameof(p), p, "Dropout probability must lie in [0, 1).");
        if (!training || p == 0) return null;
        using var _ = torch.no_grad();
        return torch.empty(shape, dtype: like.dtype, device: like.device).bernoulli_(1 - p).div_(1 - p);
    }

    /// <summary>x * mask, or x when the mask is null.</summary>
    public static Tensor Apply(Tensor x, Tensor? mask) => mask is null ? x : x * mask;

    /// <summary>Locked dropout on a batch-first sequence [B, T, C]: one mask per sequence and channel, shared over time.</summary>
    public static Tensor Locked(Tensor x, double p, bool training) =>
        Apply(x, Mask([x.shape[0], 1, x.shape[^1]], p, training, x));
}
