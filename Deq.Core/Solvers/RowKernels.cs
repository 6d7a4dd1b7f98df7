using System.Numerics;
using System.Runtime.InteropServices;
using TorchSharp;
using static TorchSharp.torch;

namespace Deq.Solvers;

/// <summary>
/// The vector kernels of Broyden's C# steps (<see cref="BroydenHostStep"/>, <see cref="BroydenCompactStep"/>) over rows
/// of CPU float32/float64 tensors: differences, dot products and combinations of factor rows, four rows per sweep (fewer
/// loads and stores of the row they meet, four independent sums).
/// </summary>
internal static class RowKernels
{
    /// <summary>into = a - b, for contiguous tensors of one shape and dtype (CPU float32/float64).</summary>
    public static void Difference(Tensor a, Tensor b, Tensor into)
    {
        if (a.dtype == ScalarType.Float32) Difference<float>(All<float>(a), All<float>(b), All<float>(into));
        else Difference<double>(All<double>(a), All<double>(b), All<double>(into));
    }

    // into = a - b (into may be a or b itself: each entry is read before it is written).
    public static void Difference<T>(ReadOnlySpan<T> a, ReadOnlySpan<T> b, Span<T> into) where T : unmanaged, INumber<T>
    {
        ReadOnlySpan<Vector<T>> av = Vectors(a), bv = Vectors(b);
        Span<Vector<T>> iv = Vectors(into);
        for (int k = 0; k < iv.Length; k++) iv[k] = av[k] - bv[k];
        for (int c = iv.Length * Vector<T>.Count; c < into.Length; c++) into[c] = a[c] - b[c];
    }

    public static Span<T> All<T>(Tensor t) where T : unmanaged => MemoryMarshal.Cast<byte, T>(t.bytes);

    // dots[j] = rows_j . x for every row, four rows per sweep over x. (Deq.Experiments' FactorBandwidth times it.)
    public static void Dots<T>(ReadOnlySpan<T> rows, ReadOnlySpan<T> x, T[] dots, int width) where T : unmanaged, INumber<T>
    {
        var xv = Vectors(x);
        int tail = xv.Length * Vector<T>.Count, j = 0;
        for (; j + 4 <= dots.Length; j += 4)
        {
            ReadOnlySpan<Vector<T>> r0 = Vectors(rows.Slice(j * width, width)), r1 = Vectors(rows.Slice((j + 1) * width, width)),
                r2 = Vectors(rows.Slice((j + 2) * width, width)), r3 = Vectors(rows.Slice((j + 3) * width, width));
            Vector<T> a0 = Vector<T>.Zero, a1 = Vector<T>.Zero, a2 = Vector<T>.Zero, a3 = Vector<T>.Zero;
            for (int k = 0; k < xv.Length; k++)
            {
                var xk = xv[k];
                a0 += r0[k] * xk;
                a1 += r1[k] * xk;
                a2 += r2[k] * xk;
                a3 += r3[k] * xk;
            }
            (dots[j], dots[j + 1], dots[j + 2], dots[j + 3]) = (Vector.Sum(a0), Vector.Sum(a1), Vector.Sum(a2), Vector.Sum(a3));
            for (int c = tail; c < width; c++)
                for (int i = 0; i < 4; i++) dots[j + i] += rows[(j + i) * width + c] * x[c];
        }
        for (; j < dots.Length; j++) dots[j] = Dot(rows.Slice(j * width, width), x);
    }

    // into = sum_j s_j rows_j, summed in j's order from zero (as a product's sum is formed); with `dots` set, also
    // dots[j] = rows_j . x in the same read of each row. Four rows per sweep.
    public static void CombinationAndDots<T>(ReadOnlySpan<T> s, ReadOnlySpan<T> rows, Span<T> into, ReadOnlySpan<T> x, T[]? dots, int width) where T : unmanaged, INumber<T>
    {
        into.Clear();
        var iv = Vectors(into);
        var xv = Vectors(x);
        int tail = iv.Length * Vector<T>.Count, j = 0;
        for (; j + 4 <= s.Length; j += 4)
        {
            ReadOnlySpan<Vector<T>> r0 = Vectors(rows.Slice(j * width, width)), r1 = Vectors(rows.Slice((j + 1) * width, width)),
                r2 = Vectors(rows.Slice((j + 2) * width, width)), r3 = Vectors(rows.Slice((j + 3) * width, width));
            Vector<T> s0 = new(s[j]), s1 = new(s[j + 1]), s2 = new(s[j + 2]), s3 = new(s[j + 3]);
            if (dots is null)
                for (int k = 0; k < iv.Length; k++) iv[k] = iv[k] + s0 * r0[k] + s1 * r1[k] + s2 * r2[k] + s3 * r3[k];
            else
            {
                Vector<T> a0 = Vector<T>.Zero, a1 = Vector<T>.Zero, a2 = Vector<T>.Zero, a3 = Vector<T>.Zero;
                for (int k = 0; k < iv.Length; k++)
                {
                    Vector<T> q0 = r0[k], q1 = r1[k], q2 = r2[k], q3 = r3[k], xk = xv[k];
                    iv[k] = iv[k] + s0 * q0 + s1 * q1 + s2 * q2 + s3 * q3;
                    a0 += q0 * xk;
                    a1 += q1 * xk;
                    a2 += q2 * xk;
                    a3 += q3 * xk;
                }
                (dots[j], dots[j + 1], dots[j + 2], dots[j + 3]) = (Vector.Sum(a0), Vector.Sum(a1), Vector.Sum(a2), Vector.Sum(a3));
            }
            for (int c = tail; c < width; c++)
                for (int i = 0; i < 4; i++)
                {
                    var r = rows[(j + i) * width + c];
                    into[c] += s[j + i] * r;
                    if (dots is not null) dots[j + i] += r * x[c];
                }
        }
        for (; j < s.Length; j++)
        {
            var row = rows.Slice(j * width, width);
            var rv = Vectors(row);
            var sj = new Vector<T>(s[j]);
            for (int k = 0; k < iv.Length; k++) iv[k] += sj * rv[k];
            for (int c = tail; c < width; c++) into[c] += s[j] * row[c];
            if (dots is not null) dots[j] = Dot(row, x);
        }
    }

    /// <summary>Runs <paramref name="elements"/> over [0, batch) in contiguous ranges, on as many threads as torch uses,
    /// where an element's work (<paramref name="rowsPerElement"/> rows of <paramref name="width"/>) outweighs handing it
    /// to another thread; else on this one. Elements are independent, so the bits do not depend on the threads.</summary>
    public static void ForElements(int batch, long width, int rowsPerElement, Action<int, int> elements)
    {
        int threads = Math.Min(torch.get_num_threads(), batch);
        if (threads > 1 && width * rowsPerElement >= 1 << 15)
            Parallel.For(0, threads, new ParallelOptions { MaxDegreeOfParallelism = threads }, t => elements(t * batch / threads, (t + 1) * batch / threads));
        else
            elements(0, batch);
    }

    // dots[j] = rows_j . x and others[j] = rows_j . y for every row, in one read of each, four rows per sweep.
    public static void Dots<T>(ReadOnlySpan<T> rows, ReadOnlySpan<T> x, T[] dots, ReadOnlySpan<T> y, T[] others, int width) where T : unmanaged, INumber<T>
    {
        ReadOnlySpan<Vector<T>> xv = Vectors(x), yv = Vectors(y);
        int tail = xv.Length * Vector<T>.Count, j = 0;
        for (; j + 4 <= dots.Length; j += 4)
        {
            ReadOnlySpan<Vector<T>> r0 = Vectors(rows.Slice(j * width, width)), r1 = Vectors(rows.Slice((j + 1) * width, width)),
                r2 = Vectors(rows.Slice((j + 2) * width, width)), r3 = Vectors(rows.Slice((j + 3) * width, width));
            Vector<T> a0 = Vector<T>.Zero, a1 = Vector<T>.Zero, a2 = Vector<T>.Zero, a3 = Vector<T>.Zero;
            Vector<T> b0 = Vector<T>.Zero, b1 = Vector<T>.Zero, b2 = Vector<T>.Zero, b3 = Vector<T>.Zero;
            for (int k = 0; k < xv.Length; k++)
            {
                Vector<T> q0 = r0[k], q1 = r1[k], q2 = r2[k], q3 = r3[k], xk = xv[k], yk = yv[k];
                a0 += q0 * xk;
                a1 += q1 * xk;
                a2 += q2 * xk;
                a3 += q3 * xk;
                b0 += q0 * yk;
                b1 += q1 * yk;
                b2 += q2 * yk;
                b3 += q3 * yk;
            }
            (dots[j], dots[j + 1], dots[j + 2], dots[j + 3]) = (Vector.Sum(a0), Vector.Sum(a1), Vector.Sum(a2), Vector.Sum(a3));
            (others[j], others[j + 1], others[j + 2], others[j + 3]) = (Vector.Sum(b0), Vector.Sum(b1), Vector.Sum(b2), Vector.Sum(b3));
            for (int c = tail; c < width; c++)
                for (int i = 0; i < 4; i++)
                {
                    var r = rows[(j + i) * width + c];
                    dots[j + i] += r * x[c];
                    others[j + i] += r * y[c];
                }
        }
        for (; j < dots.Length; j++) (dots[j], others[j]) = (Dot(rows.Slice(j * width, width), x), Dot(rows.Slice(j * width, width), y));
    }

    public static Span<Vector<T>> Vectors<T>(Span<T> s) where T : unmanaged => MemoryMarshal.Cast<T, Vector<T>>(s);
    public static ReadOnlySpan<Vector<T>> Vectors<T>(ReadOnlySpan<T> s) where T : unmanaged => MemoryMarshal.Cast<T, Vector<T>>(s);

    // p . q with four accumulators (a chain of dependent adds would wait on each add's latency), combined in a fixed order.
    public static T Dot<T>(ReadOnlySpan<T> p, ReadOnlySpan<T> q) where T : unmanaged, INumber<T>
    {
        ReadOnlySpan<Vector<T>> pv = Vectors(p), qv = Vectors(q);
        Vector<T> a0 = Vector<T>.Zero, a1 = Vector<T>.Zero, a2 = Vector<T>.Zero, a3 = Vector<T>.Zero;
        int k = 0;
        for (; k + 4 <= pv.Length; k += 4)
        {
            a0 += pv[k] * qv[k];
            a1 += pv[k + 1] * qv[k + 1];
            a2 += pv[k + 2] * qv[k + 2];
            a3 += pv[k + 3] * qv[k + 3];
        }
        for (; k < pv.Length; k++) a0 += pv[k] * qv[k];
        T sum = Vector.Sum((a0 + a1) + (a2 + a3));
        for (int j = pv.Length * Vector<T>.Count; j < p.Length; j++) sum += p[j] * q[j];
        return sum;
    }
}
