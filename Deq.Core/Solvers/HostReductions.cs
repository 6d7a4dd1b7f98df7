using System.Numerics;
using System.Runtime.InteropServices;
using TorchSharp;
using static TorchSharp.torch;

namespace Deq.Solvers;

/// <summary>
/// Reductions read straight from a CPU tensor's memory: per-row L2 norms, accumulated in float64, and a finiteness check. On the CPU each tensor op costs a
/// dispatch and a fresh output: on the toy (64 x 128) ||f(z) - z|| and ||f(z)|| as three ops took 13 us a step, more
/// than f; here they are one pass over f(z) and z, with no tensor made. Where libtorch would run the reduction on
/// several threads over a large tensor, or for the max norm, the ops stay (<see cref="Reads"/>).
/// </summary>
internal static class HostReductions
{
    const long SmallElements = 1 << 18;

    /// <summary>
    /// Whether the host reads <paramref name="t"/> directly: L2, a CPU float32/float64 [rows, width] tensor whose rows
    /// are contiguous (a row of a history is one too), small or on one thread.
    /// </summary>
    public static bool Reads(Tensor t, ResidualNorm norm) =>
        norm == ResidualNorm.L2 && t.device_type == DeviceType.CPU && (t.dtype is ScalarType.Float32 or ScalarType.Float64) &&
        t.dim() == 2 && t.stride(1) == 1 && t.stride(0) >= t.size(1) && (t.numel() <= SmallElements || torch.get_num_threads() == 1) &&
        Spans((t.size(0) - 1) * t.stride(0) + t.size(1), t.ElementSize);

    /// <summary>Whether <paramref name="t"/>'s memory fits one span (TorchSharp's <c>bytes</c>: at most int.MaxValue bytes;
    /// it throws beyond), so C# can read it; larger tensors stay with libtorch's ops.</summary>
    public static bool Fits(Tensor t) => Spans(t.numel(), t.ElementSize);

    /// <summary>Whether <paramref name="elements"/> of <paramref name="elementSize"/> bytes fit one span (see <see cref="Fits"/>).</summary>
    public static bool Spans(long elements, long elementSize) => elements * elementSize <= int.MaxValue;

    /// <summary>
    /// ||d|| and ||f|| per row of [rows, width] tensors of one dtype, in one pass: d = f - <paramref name="other"/>
    /// (formed in the tensors' dtype, as libtorch's sub would), or d = <paramref name="other"/> itself when
    /// <paramref name="otherIsDifference"/>. <paramref name="other"/> null: ||f|| alone (both results).
    /// </summary>
    public static (double[] D, double[] F) Rows(Tensor f, Tensor? other, bool otherIsDifference = false)
    {
        long rows = f.size(0);
        var (d, n) = (new double[rows], new double[rows]);
        int width = checked((int)f.size(1));
        var mode = other is null ? Mode.Self : otherIsDifference ? Mode.Given : Mode.Subtract;
        using var fView = Cover(f);
        using var oView = other is null ? null : Cover(other);
        var (fMemory, oMemory) = (fView ?? f, oView ?? other);
        var (fStride, oStride) = ((int)f.stride(0), other is null ? (int)f.stride(0) : (int)other.stride(0));
        if (f.dtype == ScalarType.Float32)
        {
            ReadOnlySpan<float> x = MemoryMarshal.Cast<byte, float>(fMemory.bytes), y = other is null ? x : MemoryMarshal.Cast<byte, float>(oMemory!.bytes);
            for (int i = 0; i < rows; i++) (d[i], n[i]) = Row(x.Slice(i * fStride, width), y.Slice(i * oStride, width), mode);
        }
        else
        {
            ReadOnlySpan<double> x = MemoryMarshal.Cast<byte, double>(fMemory.bytes), y = other is null ? x : MemoryMarshal.Cast<byte, double>(oMemory!.bytes);
            for (int i = 0; i < rows; i++) (d[i], n[i]) = Row(x.Slice(i * fStride, width), y.Slice(i * oStride, width), mode);
        }
        return (d, n);
    }

    // For rows with gaps between them, the memory from t's first row to the end of its last as a contiguous 1-D view
    // (bytes reads only contiguous tensors); null where t is contiguous.
    static Tensor? Cover(Tensor t) =>
        t.is_contiguous() ? null : t.as_strided([(t.size(0) - 1) * t.stride(0) + t.size(1)], [1], t.storage_offset());

    /// <summary>Whether every entry is finite, for a contiguous CPU float32/float64 tensor; null for any other (ask libtorch).</summary>
    public static bool? AllFinite(Tensor t)
    {
        if (t.device_type != DeviceType.CPU || !t.is_contiguous() || !Fits(t)) return null;
        if (t.dtype == ScalarType.Float32) return AllFinite(MemoryMarshal.Cast<byte, float>(t.bytes));
        if (t.dtype == ScalarType.Float64) return AllFinite(MemoryMarshal.Cast<byte, double>(t.bytes));
        return null;
    }

    // x - x is 0 exactly for finite x and NaN for NaN and the infinities.
    static bool AllFinite<T>(ReadOnlySpan<T> x) where T : struct, System.Numerics.IFloatingPointIeee754<T>
    {
        var v = MemoryMarshal.Cast<T, Vector<T>>(x);
        for (int k = 0; k < v.Length; k++)
            if (!Vector.EqualsAll(v[k] - v[k], Vector<T>.Zero)) return false;
        for (int j = v.Length * Vector<T>.Count; j < x.Length; j++)
            if (!T.IsFinite(x[j])) return false;
        return true;
    }

    enum Mode { Self, Subtract, Given }

    static (double, double) Row(ReadOnlySpan<float> f, ReadOnlySpan<float> y, Mode mode)
    {
        ReadOnlySpan<Vector<float>> fv = MemoryMarshal.Cast<float, Vector<float>>(f), yv = MemoryMarshal.Cast<float, Vector<float>>(y);
        Vector<double> dLo = default, dHi = default, fLo = default, fHi = default;
        for (int k = 0; k < fv.Length; k++)
        {
            var d = mode == Mode.Subtract ? fv[k] - yv[k] : yv[k];
            Vector.Widen(fv[k], out var fl, out var fh);
            Vector.Widen(d, out var dl, out var dh);
            fLo += fl * fl;
            fHi += fh * fh;
            dLo += dl * dl;
            dHi += dh * dh;
        }
        double dSum = Vector.Sum(dLo + dHi), fSum = Vector.Sum(fLo + fHi);
        for (int j = fv.Length * Vector<float>.Count; j < f.Length; j++)
        {
            double dj = mode == Mode.Subtract ? f[j] - y[j] : y[j];
            dSum += dj * dj;
            fSum += (double)f[j] * f[j];
        }
        return (Math.Sqrt(dSum), Math.Sqrt(fSum));
    }

    static (double, double) Row(ReadOnlySpan<double> f, ReadOnlySpan<double> y, Mode mode)
    {
        ReadOnlySpan<Vector<double>> fv = MemoryMarshal.Cast<double, Vector<double>>(f), yv = MemoryMarshal.Cast<double, Vector<double>>(y);
        Vector<double> dAcc = default, fAcc = default;
        for (int k = 0; k < fv.Length; k++)
        {
            var d = mode == Mode.Subtract ? fv[k] - yv[k] : yv[k];
            fAcc += fv[k] * fv[k];
            dAcc += d * d;
        }
        double dSum = Vector.Sum(dAcc), fSum = Vector.Sum(fAcc);
        for (int j = fv.Length * Vector<double>.Count; j < f.Length; j++)
        {
            double dj = mode == Mode.Subtract ? f[j] - y[j] : y[j];
            dSum += dj * dj;
            fSum += f[j] * f[j];
        }
        return (Math.Sqrt(dSum), Math.Sqrt(fSum));
    }
}
