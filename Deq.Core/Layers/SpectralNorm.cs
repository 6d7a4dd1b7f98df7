using TorchSharp;
using static TorchSharp.torch;

namespace Deq.Layers;

/// <summary>
/// Spectral normalisation (Miyato et al. 2018): W / sigma(W), with sigma(W), the largest singular value of
/// W viewed as [out, rest], estimated by power iteration from a persistent vector u. As in PyTorch's
/// spectral_norm, u and v are updated without gradient and sigma = u^T W v is differentiable through W.
/// It bounds the Lipschitz constant of a linear map at 1 (times any scale applied after), which keeps f
/// contractive where weight norm only fixes row norms.
/// </summary>
public static class SpectralNorm
{
    /// <summary>
    /// W / sigma(W) for <paramref name="weight"/> [out, ...]; <paramref name="u"/> [out] is advanced by
    /// <paramref name="iterations"/> power steps in place (call once per Bind, not per f evaluation).
    /// </summary>
    public static Tensor Apply(Tensor weight, Tensor u, int iterations = 1)
    {
        if (iterations < 0)
            throw new ArgumentOutOfRangeException(nameof(iterations), iterations, "SpectralNorm iterations must be non-negative.");
        if (u.dim() != 1 || u.shape[0] != weight.shape[0])
            throw new ArgumentException($"SpectralNorm: u must be [{weight.shape[0]}] for a weight [{string.Join(", ", weight.shape)}]; got [{string.Join(", ", u.shape)}].", nameof(u));
        var w = weight.reshape(weight.shape[0], -1);
        Tensor v;
        using (torch.no_grad())
        {
            var wd = w.detach();
            v = Normalise(wd.t().mv(u));
            for (int i = 0; i < iterations; i++)
            {
                u.copy_(Normalise(wd.mv(v)));
                v = Normalise(wd.t().mv(u));
            }
        }
        var sigma = u.dot(w.mv(v));
        return weight / sigma;
    }

    /// <summary>A random unit start vector for a weight with <paramref name="rows"/> output rows.</summary>
    public static Tensor InitialVector(long rows, ScalarType dtype = ScalarType.Float32, Device? device = null, Generator? generator = null)
    {
        using var _ = torch.no_grad();
        return Normalise(torch.randn(rows, dtype: dtype, device: device, generator: generator));
    }

    static Tensor Normalise(Tensor x) => x / (x.norm() + 1e-12);
}
