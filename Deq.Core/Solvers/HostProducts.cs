using System.Numerics;
using System.Runtime.InteropServices;
using TorchSharp;
using static TorchSharp.torch;

namespace Deq.Solvers;

/// <summary>
/// Broyden's low-rank products, out = sum_j (a_j . x) b_j - x per batch element over the first `used` rows a_j, b_j of
/// [batch, memory, width] factors, computed in C# from the tensors' memory. For small CPU problems: libtorch's bmm of
/// [b, 1, n] x [b, n, m] is one BLAS gemv call per element, and on the toy (64 elements, width 128) the 256 calls a
/// step cost more than their arithmetic: a 30-step solve took 15.3 ms with them and 6.4 ms with these, f included
/// (16 x 512: 14.0 and 10.3 ms; 16 x 1024: 53 and 55, where BLAS's calls pay for themselves). The sums run in another
/// order than BLAS's, so values agree with bmm to round-off, not to the bit.
/// </summary>
internal static class HostProducts
{
    const long MaxWidth = 512, MaxFactorBytes = 4L << 20;

    /// <summary>Whether the products of factors like <paramref name="u"/> ([batch, memory, width]) run here: contiguous CPU
    /// float32/float64, rows of at most 512 entries, at most 4 MiB in all.</summary>
    public static bool Suit(Tensor u) =>
        u.device_type == DeviceType.CPU && (u.dtype is ScalarType.Float32 or ScalarType.Float64) && u.is_contiguous() &&
        u.size(2) <= MaxWidth && u.numel() * u.ElementSize <= MaxFactorBytes;

    /// <summary>Writes the product into <paramref name="into"/> ([batch, width], contiguous; it may be x itself) and returns it.</summary>
    public static Tensor Product(Tensor x, Tensor a, Tensor b, int used, Tensor into)
    {
        var (batch, memory, width) = ((int)a.size(0), (int)a.size(1), (int)a.size(2));
        if (a.dtype == ScalarType.Float32)
            Run<float>(x.bytes, a.bytes, b.bytes, into.bytes, batch, memory, width, used);
        else
            Run<double>(x.bytes, a.bytes, b.bytes, into.bytes, batch, memory, width, used);
        return into;
    }

    static void Run<T>(Span<byte> xBytes, Span<byte> aBytes, Span<byte> bBytes, Span<byte> outBytes, int batch, int memory, int width, int used)
        where T : unmanaged, INumber<T>
    {
        ReadOnlySpan<T> x = MemoryMarshal.Cast<byte, T>(xBytes), a = MemoryMarshal.Cast<byte, T>(aBytes), b = MemoryMarshal.Cast<byte, T>(bBytes);
        var output = MemoryMarshal.Cast<byte, T>(outBytes);
        var s = new T[used];
        for (int i = 0; i < batch; i++)
        {
            var xi = x.Slice(i * width, width);
            int rows = i * memory * width;
            for (int j = 0; j < used; j++) s[j] = Dot(a.Slice(rows + j * width, width), xi);
            // Every s_j is formed before the row is written, so `into` may be x.
            Combine(s, b.Slice(rows, used * width), xi, output.Slice(i * width, width), width);
        }
    }

    static T Dot<T>(ReadOnlySpan<T> p, ReadOnlySpan<T> q) where T : unmanaged, INumber<T>
    {
        ReadOnlySpan<Vector<T>> pv = MemoryMarshal.Cast<T, Vector<T>>(p), qv = MemoryMarshal.Cast<T, Vector<T>>(q);
        var acc = Vector<T>.Zero;
        for (int k = 0; k < pv.Length; k++) acc += pv[k] * qv[k];
        T sum = Vector.Sum(acc);
        for (int j = pv.Length * Vector<T>.Count; j < p.Length; j++) sum += p[j] * q[j];
        return sum;
    }

    // out = sum_j s_j rows_j - x, a vector of entries at a time over all j (the rows of one element stay in cache).
    static void Combine<T>(T[] s, ReadOnlySpan<T> rows, ReadOnlySpan<T> x, Span<T> output, int width) where T : unmanaged, INumber<T>
    {
        int n = Vector<T>.Count, full = width / n * n;
        for (int c = 0; c < full; c += n)
        {
            var acc = Vector<T>.Zero;
            for (int j = 0; j < s.Length; j++) acc += new Vector<T>(s[j]) * new Vector<T>(rows.Slice(j * width + c, n));
            (acc - new Vector<T>(x.Slice(c, n))).CopyTo(output.Slice(c, n));
        }
        for (int c = full; c < width; c++)
        {
            T acc = T.Zero;
            for (int j = 0; j < s.Length; j++) acc += s[j] * rows[j * width + c];
            output[c] = acc - x[c];
        }
    }
}
