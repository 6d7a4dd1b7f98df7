using Deq.Solvers;
using TorchSharp;
using static TorchSharp.torch;

namespace Deq.Implicit;

/// <summary>Stochastic estimates of df/dz at an equilibrium, for regularisation and health checks.</summary>
public static class JacobianEstimates
{
    /// <summary>
    /// Hutchinson's estimate of ||df/dz||_F^2 at <paramref name="z"/>, averaged over the batch:
    /// E_v ||v^T J||^2 with v ~ N(0, I). Differentiable (built with create_graph), so it can be
    /// added to the loss as the Jacobian regulariser of Bai, Koltun and Kolter (2021).
    /// </summary>
    public static Tensor FrobeniusNormSquared(Func<Tensor, Tensor> f, Tensor z, int samples = 1, Generator? generator = null)
    {
        if (samples < 1) throw new ArgumentOutOfRangeException(nameof(samples), samples, "FrobeniusNormSquared: samples must be at least 1.");
        using var scope = torch.NewDisposeScope();
        using var grad = torch.enable_grad();
        var zz = z.detach().requires_grad_(true);
        var fz = f(zz);
        var total = torch.zeros([], dtype: z.dtype, device: z.device);
        for (int s = 0; s < samples; s++)
        {
            var v = torch.randn(fz.shape, dtype: fz.dtype, device: fz.device, generator: generator);
            var vj = torch.autograd.grad([fz], [zz], [v], retain_graph: true, create_graph: true, allow_unused: true)[0];
            if (vj is null || vj.IsInvalid) continue;   // f ignores z: J = 0
            total = total + vj.pow(2).sum();
        }
        return (total / (samples * z.shape[0])).MoveToOuterDisposeScope();
    }

    /// <summary>
    /// Power-iteration estimate of the spectral radius of df/dz at <paramref name="z"/>, per batch
    /// element (f must act on batch elements independently). Below 1 means plain iteration
    /// contracts near z*; the estimate is exact for a dominant eigenvalue that is unique in modulus.
    /// </summary>
    public static double[] SpectralRadius(Func<Tensor, Tensor> f, Tensor z, int iterations = 50, Generator? generator = null)
    {
        if (iterations < 1) throw new ArgumentOutOfRangeException(nameof(iterations), iterations, "SpectralRadius: iterations must be at least 1.");
        using var scope = torch.NewDisposeScope();
        using var grad = torch.enable_grad();
        long b = z.shape[0];
        var zz = z.detach().requires_grad_(true);
        var fz = f(zz);
        var v = torch.randn(fz.shape, dtype: fz.dtype, device: fz.device, generator: generator);
        Tensor norms = torch.zeros(b, dtype: z.dtype, device: z.device);
        for (int k = 0; k < iterations; k++)
        {
            using var step = torch.NewDisposeScope();
            v = v / (v.reshape(b, -1).norm(1).clamp_min(1e-300).reshape([b, .. Enumerable.Repeat(1L, (int)v.dim() - 1)]));
            var jv = torch.autograd.grad([fz], [zz], [v], retain_graph: true, allow_unused: true)[0];   // v^T J: same spectrum as J
            if (jv is null || jv.IsInvalid) return new double[b];   // f ignores z: J = 0
            norms = jv.reshape(b, -1).norm(1).MoveToOuterDisposeScope();
            v = jv.detach().MoveToOuterDisposeScope();
        }
        return Residuals.ToHost(norms);
    }
}
