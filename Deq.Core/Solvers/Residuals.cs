using System.Runtime.InteropServices;
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

    /// <summary>
    /// ||f(z) - z|| and ||f(z)|| per row of a flat step [batch, width], read from the tensors' memory where
    /// <see cref="HostReductions"/> can (the CPU ledger's path); null where it cannot. <paramref name="difference"/>:
    /// f(z) - z, when the step kept it.
    /// </summary>
    public static (double[] Abs, double[] FzNorm)? FromMemory(Tensor z, Tensor fz, ResidualNorm norm, Tensor? difference = null)
    {
        var other = difference ?? z;
        return HostReductions.Reads(fz, norm) && HostReductions.Reads(other, norm)
            ? HostReductions.Rows(fz, other, otherIsDifference: difference is not null)
            : null;
    }

    /// <summary>
    /// A per-element tensor as float64 values on the host. A contiguous CPU float32/float64 tensor is read from its
    /// memory: <c>data&lt;T&gt;().ToArray()</c> reads element by element through an accessor (4 us for 64 floats, 0.2 us so).
    /// </summary>
    public static double[] ToHost(Tensor perElement)
    {
        if (perElement.device_type != DeviceType.CPU || !perElement.is_contiguous() ||
            perElement.dtype is not (ScalarType.Float32 or ScalarType.Float64))
            using (var wide = perElement.to(ScalarType.Float64).cpu().contiguous())
                return MemoryMarshal.Cast<byte, double>(wide.bytes).ToArray();
        if (perElement.dtype == ScalarType.Float64) return MemoryMarshal.Cast<byte, double>(perElement.bytes).ToArray();
        var floats = MemoryMarshal.Cast<byte, float>(perElement.bytes);
        var values = new double[floats.Length];
        for (int i = 0; i < values.Length; i++) values[i] = floats[i];
        return values;
    }

    static Tensor Norm(Tensor flat, ResidualNorm norm) => norm == ResidualNorm.L2 ? flat.norm(1) : flat.abs().amax(1);
}
