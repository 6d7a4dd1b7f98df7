using TorchSharp;
using static TorchSharp.torch;

namespace Deq.Layers;

/// <summary>
/// Weight normalisation (Salimans and Kingma 2016), as the DEQ paper uses it on f's maps:
/// w = g v / ||v||, with one scale g per output unit and the norm taken over every other dimension.
/// </summary>
public static class WeightNorm
{
    /// <summary>
    /// The effective weight g v / ||v|| for a weight shaped [out, ...]; g is [out]. A row of v that is all zeros (one
    /// that DropConnect dropped whole: likely at small widths, 3% of binds of a 6-input injection at p = 0.3) gives a
    /// zero row, not 0/0 = NaN: ||v||^2 is taken as at least 1e-30 (before the square root, whose gradient at 0 is
    /// 0/0 too), which changes no row of a realistic weight.
    /// </summary>
    public static Tensor Apply(Tensor g, Tensor v)
    {
        var dims = Enumerable.Range(1, (int)v.dim() - 1).Select(d => (long)d).ToArray();
        var norm = dims.Length == 0 ? v.abs().clamp_min(1e-15) : v.square().sum(dims, keepdim: true).clamp_min(1e-30).sqrt();
        var shape = new long[v.dim()];
        Array.Fill(shape, 1L);
        shape[0] = v.shape[0];
        return v * (g.reshape(shape) / norm);
    }

    /// <summary>The scale that makes g v / ||v|| equal v at initialisation (what PyTorch's weight_norm does).</summary>
    public static Tensor InitialScale(Tensor v)
    {
        using var _ = torch.no_grad();
        var dims = Enumerable.Range(1, (int)v.dim() - 1).Select(d => (long)d).ToArray();
        return dims.Length == 0 ? v.abs().clone() : v.square().sum(dims).sqrt();
    }
}
