using System.Numerics;
using TorchSharp;
using static TorchSharp.torch;
using static Deq.Solvers.RowKernels;

namespace Deq.Solvers;

/// <summary>
/// Broyden's step after f in C#, with V kept implicit while the ring fills. Slot j of V holds dx_j, and row j of
/// <see cref="Buffers.W"/> that step's dots u_i . dx_j (i &lt; j), so the update's row is
/// v_j = dx_j^T J^-1 = -dx_j + sum_{i&lt;j} W[j,i] v_i. Then V^T g comes from dx's dots by forward substitution
/// (a_j = -dx_j . g + sum_{i&lt;j} W[j,i] a_i), the new row's dots with g_new and g from dx's and the W row, and v is
/// never formed. The factors are read twice a step (dx's dots; U's combination and dots together) where the explicit
/// form (<see cref="BroydenHostStep"/>) reads V again to build v; and with the denominator known before the last pass,
/// u, its slot and J_new^-1 g_new take one pass. A wrapped slot's dx still sits in later rows' v, so before the ring
/// wraps, or libtorch's ops take a step, the solve expands V in place (<see cref="Expand"/>) and goes on explicitly.
/// Values agree with the explicit form to round-off.
/// </summary>
internal static class BroydenCompactStep
{
    /// <summary>One step's buffers, [batch, width] but the factors.</summary>
    /// <param name="Z">The iterate the step started from.</param>
    /// <param name="X">Its new point.</param>
    /// <param name="Fx">f(X).</param>
    /// <param name="G">In: g at Z. Out: J_new^-1 g_new.</param>
    /// <param name="JG">In: J^-1 g at Z (read only; spent after).</param>
    /// <param name="NewG">Out: g_new = f(X) - X.</param>
    /// <param name="U">Factors [batch, memory, width]; slot <paramref name="Used"/> receives u.</param>
    /// <param name="V">dx rows [batch, memory, width]; slot <paramref name="Used"/> receives X - Z.</param>
    /// <param name="W">The dots [batch, memory, memory] (float[] or double[], as the tensors); row <paramref name="Used"/> receives this step's.</param>
    /// <param name="Used">Slots in use before this step, fewer than memory (the slot written is the next).</param>
    public sealed record Buffers(Tensor Z, Tensor X, Tensor Fx, Tensor G, Tensor JG, Tensor NewG, Tensor U, Tensor V, Array W, int Used);

    /// <summary>The dots' array for factors like <paramref name="u"/> ([batch, memory, width], float32 or float64).</summary>
    public static Array NewW(Tensor u)
    {
        long n = u.size(0) * u.size(1) * u.size(1);
        return u.dtype == ScalarType.Float32 ? new float[n] : new double[n];
    }

    /// <summary>Runs the step into <paramref name="b"/>'s buffers and factors.</summary>
    public static void Run(Buffers b) => ForElements((int)b.X.size(0), b.X.size(1), b.Used + 4, (from, to) =>
    {
        if (b.X.dtype == ScalarType.Float32) Elements<float>(b, from, to, (float)BroydenHostStep.Tiny);
        else Elements<double>(b, from, to, BroydenHostStep.Tiny);
    });

    /// <summary>Writes v_j over dx_j in <paramref name="v"/>'s first <paramref name="used"/> slots: the explicit factors.</summary>
    public static void Expand(Tensor v, Array w, int used) => ForElements((int)v.size(0), v.size(2), used, (from, to) =>
    {
        if (v.dtype == ScalarType.Float32) Expand(All<float>(v), (float[])w, (int)v.size(1), (int)v.size(2), used, from, to);
        else Expand(All<double>(v), (double[])w, (int)v.size(1), (int)v.size(2), used, from, to);
    });

    // Bottom up, so each v_j's combination reads rows already expanded, and dx_j is overwritten only by v_j: the
    // explicit form's vSum - dx, in its kernel and order.
    static void Expand<T>(Span<T> vAll, T[] w, int memory, int width, int used, int from, int to) where T : unmanaged, INumber<T>
    {
        var scratch = new T[width];
        for (int i = from; i < to; i++)
        {
            var rows = vAll.Slice(i * memory * width, memory * width);
            for (int j = 0; j < used; j++)
            {
                CombinationAndDots<T>(w.AsSpan((i * memory + j) * memory, j), rows[..(j * width)], scratch, default, null, width);
                var row = rows.Slice(j * width, width);
                Difference<T>(scratch, row, row);
            }
        }
    }

    static void Elements<T>(Buffers b, int from, int to, T tiny) where T : unmanaged, INumber<T>
    {
        int width = (int)b.X.size(1), memory = (int)b.U.size(1), used = b.Used;
        ReadOnlySpan<T> z = All<T>(b.Z), x = All<T>(b.X), fx = All<T>(b.Fx), jgOld = All<T>(b.JG);
        Span<T> g = All<T>(b.NewG), gOld = All<T>(b.G), uAll = All<T>(b.U), vAll = All<T>(b.V);
        var w = (T[])b.W;
        var s = new Scratch<T>(used);
        for (int i = from; i < to; i++)
        {
            int row = i * width, rows = i * memory * width;
            Element(z.Slice(row, width), x.Slice(row, width), fx.Slice(row, width), g.Slice(row, width), gOld.Slice(row, width),
                jgOld.Slice(row, width), uAll.Slice(rows, memory * width), vAll.Slice(rows, memory * width),
                w.AsSpan(i * memory * memory, memory * memory), memory, s, tiny);
        }
    }

    // A range's small arrays: dx's dots with g_new and g, V^T g_new and V^T g, and u . dx (the new W row).
    sealed record Scratch<T>(T[] E, T[] F, T[] A, T[] B, T[] S)
    {
        public Scratch(int used) : this(new T[used], new T[used], new T[used], new T[used], new T[used]) { }
    }

    static void Element<T>(ReadOnlySpan<T> z, ReadOnlySpan<T> x, ReadOnlySpan<T> fx, Span<T> g, Span<T> gOld, ReadOnlySpan<T> jgOld,
        Span<T> uRows, Span<T> vRows, Span<T> w, int memory, Scratch<T> s, T tiny) where T : unmanaged, INumber<T>
    {
        int width = x.Length, used = s.A.Length;
        Span<T> dx = vRows.Slice(used * width, width), uSlot = uRows.Slice(used * width, width), wRow = w.Slice(used * memory, used);

        // g_new, dx into its slot, dx . g_new and dx . g; then dx_j . g_new and dx_j . g for the rows in use, and by
        // substitution a = V^T g_new and b = V^T g.
        var (dxg, dxo, finite) = Differences(fx, x, z, gOld, g, dx);
        Dots(vRows[..(used * width)], g, s.E, gOld, s.F, width);
        Substitute(w, memory, s.E, s.A);
        Substitute(w, memory, s.F, s.B);

        // Over U: sum_j a_j u_j (into the old g's row, spent) and s_j = u_j . dx. The new row v = -dx + sum_j s_j v_j
        // has v . g_new = -dx . g_new + s . a, and v . dg = that - (-dx . g + s . b).
        CombinationAndDots(s.A, uRows[..(used * width)], gOld, dx, s.S, width);
        T vg = -dxg, vo = -dxo;
        for (int j = 0; j < used; j++)
        {
            vg += s.S[j] * s.A[j];
            vo += s.S[j] * s.B[j];
            finite &= T.IsFinite(s.S[j]);
        }
        T denom = vg - vo;
        if (finite) s.S.CopyTo(wRow);
        else
        {
            // v has a non-finite entry (the element has blown up): the update is dropped, and its row stored as v = 0.
            dx.Clear();
            wRow.Clear();
            (vg, denom) = (T.Zero, T.Zero);
        }
        if (!(T.Abs(denom) > tiny)) denom = T.One / T.Zero;   // +Inf: u becomes 0

        // jg = J^-1 g_new = sum - g_new; u = (J^-1 g - jg + dx) / denominator (non-finite -> 0) into its slot;
        // J_new^-1 g_new = jg + u (v . g_new) into the old g's row.
        Update(gOld, g, jgOld, dx, uSlot, denom, vg);
    }

    // out[j] = -dots[j] + sum_{i<j} W[j,i] out[i].
    static void Substitute<T>(ReadOnlySpan<T> w, int memory, T[] dots, T[] result) where T : unmanaged, INumber<T>
    {
        for (int j = 0; j < dots.Length; j++)
        {
            T sum = -dots[j];
            var row = w.Slice(j * memory, j);
            for (int i = 0; i < j; i++) sum += row[i] * result[i];
            result[j] = sum;
        }
    }

    // g = f(x) - x, dx = x - z; dx . g, dx . g_old, and whether dx is finite.
    static (T Dxg, T Dxo, bool Finite) Differences<T>(ReadOnlySpan<T> fx, ReadOnlySpan<T> x, ReadOnlySpan<T> z, ReadOnlySpan<T> gOld, Span<T> g, Span<T> dx)
        where T : unmanaged, INumber<T>
    {
        ReadOnlySpan<Vector<T>> fv = Vectors(fx), xv = Vectors(x), zv = Vectors(z), ov = Vectors(gOld);
        Span<Vector<T>> gv = Vectors(g), dxv = Vectors(dx);
        Vector<T> dg = Vector<T>.Zero, dgo = Vector<T>.Zero, nan = Vector<T>.Zero;
        for (int k = 0; k < xv.Length; k++)
        {
            var gk = fv[k] - xv[k];
            var d = xv[k] - zv[k];
            gv[k] = gk;
            dxv[k] = d;
            dg += d * gk;
            dgo += d * ov[k];
            nan += d - d;                                       // stays 0 unless an entry is infinite or NaN
        }
        T p = Vector.Sum(dg), q = Vector.Sum(dgo), n = Vector.Sum(nan);
        for (int c = xv.Length * Vector<T>.Count; c < x.Length; c++)
        {
            g[c] = fx[c] - x[c];
            var d = dx[c] = x[c] - z[c];
            p += d * g[c];
            q += d * gOld[c];
            n += d - d;
        }
        return (p, q, n == T.Zero);
    }

    static void Update<T>(Span<T> sum, ReadOnlySpan<T> g, ReadOnlySpan<T> jgOld, ReadOnlySpan<T> dx, Span<T> uSlot, T denom, T vg)
        where T : unmanaged, INumber<T>
    {
        Span<Vector<T>> sv = Vectors(sum), usv = Vectors(uSlot);
        ReadOnlySpan<Vector<T>> gv = Vectors(g), ov = Vectors(jgOld), dxv = Vectors(dx);
        var (dv, vgv) = (new Vector<T>(denom), new Vector<T>(vg));
        for (int k = 0; k < sv.Length; k++)
        {
            var j = sv[k] - gv[k];
            var u = (ov[k] - j + dxv[k]) / dv;
            u = Vector.ConditionalSelect(Vector.Equals(u - u, Vector<T>.Zero), u, Vector<T>.Zero);   // non-finite -> 0
            usv[k] = u;
            sv[k] = j + u * vgv;
        }
        for (int c = sv.Length * Vector<T>.Count; c < sum.Length; c++)
        {
            var j = sum[c] - g[c];
            var u = (jgOld[c] - j + dx[c]) / denom;
            if (!T.IsFinite(u)) u = T.Zero;
            uSlot[c] = u;
            sum[c] = j + u * vg;
        }
    }
}
