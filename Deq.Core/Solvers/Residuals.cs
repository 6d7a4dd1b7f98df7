using TorchSharp;
using static TorchSharp.torch;

namespace Deq.Solvers;

/// <summary>Per-batch-element residuals of one step (z, f(z)), copied to the host.</summary>
internal static class Residuals
{
    /// <summary>abs = ||f(z) - z||, rel = abs / (||f(z)|| + 1e-12), per batch element, in <paramref name="norm"/>.</summary>
    public static (double[] Abs, double[] Rel) PerElement(Tensor z, Tensor fz, ResidualNorm norm = ResidualNorm.L2)
    {
        using var scope = torch.NewDisposeScope();
        long b = fz.shape[0];
        var abs = Norm((fz - z).reshape(b, -1), norm);
        var rel = abs / (Norm(fz.reshape(b, -1), norm) + 1e-12);
        return (ToHost(abs), ToHost(rel));
    }

    /// <summary>A per-element tensor as float64 values on the host.</summary>
    public static double[] ToHost(Tensor perElement) =>
        perElement.to(ScalarType.Float64).cpu().data<double>().ToArray();

    static Tensor Norm(Tensor flat, ResidualNorm norm) => norm == ResidualNorm.L2 ? flat.norm(1) : flat.abs().amax(1);
}
