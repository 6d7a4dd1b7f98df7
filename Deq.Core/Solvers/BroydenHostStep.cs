using System.Numerics;
using TorchSharp;
using static TorchSharp.torch;
using static Deq.Solvers.RowKernels;

namespace Deq.Solvers;

/// <summary>
/// The part of a Broyden step after f, for CPU float32/float64, in C# over the tensors' memory, with V explicit: where
/// the implicit form (<see cref="BroydenCompactStep"/>) cannot go on, once the ring wraps or after a step in libtorch's
/// ops. Per batch element: the differences in one pass, the factor rows read three times (V's dots, U's dots and
/// combination together, V's combination), the products' ends in one pass and the rank-one update into the slot in one,
/// where libtorch's form is some twenty ops, each a dispatch and a pass over [batch, width], and its bmm one BLAS gemv
/// call per element (the toy: 256 tiny calls a step).
/// The same formulas, term by term, as the libtorch form in <see cref="Broyden"/>; the dot products and the
/// denominator sum in another order, so values agree with it to round-off, not to the bit. Elements are independent,
/// so with several threads they run in parallel and give the same bits as on one.
/// </summary>
internal static class BroydenHostStep
{
    /// <summary>Whether the step runs here for factors like <paramref name="u"/> ([batch, memory, width]): CPU float32/float64.</summary>
    public static bool Suit(Tensor u) =>
        u.device_type == DeviceType.CPU && (u.dtype is ScalarType.Float32 or ScalarType.Float64) && u.is_contiguous() && HostReductions.Fits(u);

    /// <summary>Whether this step's tensors can be read as rows: each contiguous (a user's f may return a view).</summary>
    public static bool Readable(params Tensor[] ts) => ts.All(t => t.is_contiguous());

    /// <summary>The buffers and factors of one step, all [batch, width] but the factors.</summary>
    /// <param name="Z">The iterate the step started from.</param>
    /// <param name="X">Its new point.</param>
    /// <param name="Fx">f(X).</param>
    /// <param name="G">In: g at Z. Out: J_new^-1 g_new.</param>
    /// <param name="JG">In: J^-1 g at Z. Out: u, the update's column, as written into its slot.</param>
    /// <param name="NewG">Out: g_new = f(X) - X.</param>
    /// <param name="Dx">Out: dx^T J^-1, the update's row (X - Z on the way).</param>
    /// <param name="Dg">Out: g_new - g.</param>
    /// <param name="U">Factors [batch, memory, width]; slot <paramref name="Slot"/> receives u.</param>
    /// <param name="V">Factors; slot <paramref name="Slot"/> receives dx^T J^-1.</param>
    /// <param name="Used">Slots in use before this step.</param>
    /// <param name="Slot">The slot written (the oldest once the ring is full).</param>
    /// <param name="Wrapped">Whether the slot held an update that this one replaces.</param>
    public sealed record Buffers(Tensor Z, Tensor X, Tensor Fx, Tensor G, Tensor JG, Tensor NewG, Tensor Dx, Tensor Dg, Tensor U, Tensor V, int Used, int Slot, bool Wrapped);

    /// <summary>Runs the step into <paramref name="b"/>'s buffers and factors.</summary>
    public static void Run(Buffers b) => ForElements((int)b.X.size(0), b.X.size(1), b.Used + 4, (from, to) => Elements(b, from, to));

    static void Elements(Buffers b, int from, int to)
    {
        if (b.X.dtype == ScalarType.Float32) Elements<float>(b, from, to, (float)Tiny);
        else Elements<double>(b, from, to, Tiny);
    }

    // |denominator| at or below this (or NaN) drops the update (u = 0), as Broyden's libtorch form does; libtorch compares
    // float32 with the bound rounded to float32, so this does too.
    internal const double Tiny = 1e-30;

    // Elements [from, to): the tensors' memory is looked up once for the range (a lookup is a native call, 0.2 us), and
    // the dot products' arrays and the scratch row are the range's.
    static void Elements<T>(Buffers b, int from, int to, T tiny) where T : unmanaged, INumber<T>
    {
        int width = (int)b.X.size(1), memory = (int)b.U.size(1), used = b.Used;
        ReadOnlySpan<T> z = All<T>(b.Z), x = All<T>(b.X), fx = All<T>(b.Fx);
        Span<T> g = All<T>(b.NewG), gOld = All<T>(b.G), jgOld = All<T>(b.JG), dx = All<T>(b.Dx), dg = All<T>(b.Dg);
        Span<T> uAll = All<T>(b.U), vAll = All<T>(b.V);
        var (s1, s2) = (new T[used], new T[used]);
        var scratch = System.Buffers.ArrayPool<T>.Shared.Rent(width);
        try
        {
            var vSum = scratch.AsSpan(0, width);
            for (int i = from; i < to; i++)
            {
                int row = i * width, rows = i * memory * width;
                Element(z.Slice(row, width), x.Slice(row, width), fx.Slice(row, width), g.Slice(row, width), gOld.Slice(row, width),
                    jgOld.Slice(row, width), dx.Slice(row, width), dg.Slice(row, width), uAll.Slice(rows, memory * width),
                    vAll.Slice(rows, memory * width), s1, s2, vSum, b.Slot, b.Wrapped, tiny);
            }
        }
        finally
        {
            System.Buffers.ArrayPool<T>.Shared.Return(scratch);
        }
    }

    // One element: its rows, its factors' rows [memory, width] (the first s1.Length in use), and the range's work space.
    static void Element<T>(ReadOnlySpan<T> z, ReadOnlySpan<T> x, ReadOnlySpan<T> fx, Span<T> g, Span<T> gOld, Span<T> jgOld,
        Span<T> dx, Span<T> dg, Span<T> uRows, Span<T> vRows, T[] s1, T[] s2, Span<T> vSum, int slot, bool wrapped, T tiny)
        where T : unmanaged, INumber<T>
    {
        int width = x.Length;
        ReadOnlySpan<T> us = uRows[..(s1.Length * width)], vs = vRows[..(s1.Length * width)];

        // g_new = f(x) - x, dx = x - z, dg = g_new - g; s1_j = v_j . g_new; over U, s2_j = u_j . dx and sum_j s1_j u_j
        // (into the old g's row, spent) in one read of each row; sum_j s2_j v_j into the scratch row; then the products'
        // ends (Finish). Four factor rows per sweep: fewer loads and stores of the row they meet, four independent sums.
        Differences(fx, x, z, gOld, g, dx, dg);
        Dots(vs, g, s1, width);
        CombinationAndDots(s1, us, gOld, dx, s2, width);
        CombinationAndDots(s2, vs, vSum, default, null, width);
        var (denom, vg, finite) = Finish(gOld, vSum, g, dg, jgOld, dx);
        if (!finite)
        {
            // Non-finite entries of dx^T J^-1 become 0 before anything reads them (rare: the element has blown up).
            foreach (ref var e in dx) if (!T.IsFinite(e)) e = T.Zero;
            vg = Dot(dx, g);
        }
        if (!(T.Abs(denom) > tiny)) denom = T.One / T.Zero;   // +Inf: u becomes 0

        // The update: u /= denominator (non-finite -> 0); J_new^-1 g_new = J^-1 g_new - u_old (v_old . g_new)
        // + u ((dx^T J^-1) . g_new); u and dx^T J^-1 into the slot.
        Span<T> uSlot = uRows.Slice(slot * width, width), vSlot = vRows.Slice(slot * width, width);
        Update(jgOld, gOld, dx, uSlot, vSlot, denom, vg, wrapped ? s1[slot] : T.Zero, wrapped);
    }

    static void Differences<T>(ReadOnlySpan<T> fx, ReadOnlySpan<T> x, ReadOnlySpan<T> z, ReadOnlySpan<T> gOld, Span<T> g, Span<T> dx, Span<T> dg)
        where T : unmanaged, INumber<T>
    {
        ReadOnlySpan<Vector<T>> fv = Vectors(fx), xv = Vectors(x), zv = Vectors(z), ov = Vectors(gOld);
        Span<Vector<T>> gv = Vectors(g), dxv = Vectors(dx), dgv = Vectors(dg);
        for (int k = 0; k < xv.Length; k++)
        {
            var gk = fv[k] - xv[k];
            gv[k] = gk;
            dxv[k] = xv[k] - zv[k];
            dgv[k] = gk - ov[k];
        }
        for (int c = xv.Length * Vector<T>.Count; c < x.Length; c++)
        {
            g[c] = fx[c] - x[c];
            dx[c] = x[c] - z[c];
            dg[c] = g[c] - gOld[c];
        }
    }

    // jg = uSum - g_new (in place), u = (u - jg) + dx, vt = vSum - dx (into dx); the denominator dg . vt, vt . g_new, and
    // whether vt is finite.
    static (T Denom, T Vg, bool Finite) Finish<T>(Span<T> jg, ReadOnlySpan<T> vSum, ReadOnlySpan<T> g, ReadOnlySpan<T> dg, Span<T> u, Span<T> dx)
        where T : unmanaged, INumber<T>
    {
        Span<Vector<T>> jv = Vectors(jg), uv = Vectors(u), dxv = Vectors(dx);
        ReadOnlySpan<Vector<T>> sv = Vectors(vSum), gv = Vectors(g), dgv = Vectors(dg);
        Vector<T> denom = Vector<T>.Zero, vg = Vector<T>.Zero, nan = Vector<T>.Zero;
        for (int k = 0; k < jv.Length; k++)
        {
            var j = jv[k] - gv[k];
            jv[k] = j;
            var d = dxv[k];
            uv[k] = uv[k] - j + d;
            var vt = sv[k] - d;
            dxv[k] = vt;
            denom += dgv[k] * vt;
            vg += vt * gv[k];
            nan += vt - vt;                                     // stays 0 unless an entry is infinite or NaN
        }
        T dn = Vector.Sum(denom), p = Vector.Sum(vg), q = Vector.Sum(nan);
        for (int c = jv.Length * Vector<T>.Count; c < jg.Length; c++)
        {
            var j = jg[c] - g[c];
            jg[c] = j;
            u[c] = u[c] - j + dx[c];
            var vt = vSum[c] - dx[c];
            dx[c] = vt;
            dn += dg[c] * vt;
            p += vt * g[c];
            q += vt - vt;
        }
        return (dn, p, q == T.Zero);
    }

    static void Update<T>(Span<T> u, Span<T> jg, ReadOnlySpan<T> vt, Span<T> uSlot, Span<T> vSlot, T denom, T vg, T oldTerm, bool wrapped)
        where T : unmanaged, INumber<T>
    {
        Span<Vector<T>> uv = Vectors(u), jv = Vectors(jg), usv = Vectors(uSlot), vsv = Vectors(vSlot);
        ReadOnlySpan<Vector<T>> tv = Vectors(vt);
        var (dv, vgv, oldv) = (new Vector<T>(denom), new Vector<T>(vg), new Vector<T>(oldTerm));
        for (int k = 0; k < uv.Length; k++)
        {
            var uk = uv[k] / dv;
            uk = Vector.ConditionalSelect(Vector.Equals(uk - uk, Vector<T>.Zero), uk, Vector<T>.Zero);   // non-finite -> 0
            var jk = jv[k];
            if (wrapped) jk -= usv[k] * oldv;
            jv[k] = jk + uk * vgv;
            usv[k] = uk;
            vsv[k] = tv[k];
        }
        for (int c = uv.Length * Vector<T>.Count; c < u.Length; c++)
        {
            var uc = u[c] / denom;
            if (!T.IsFinite(uc)) uc = T.Zero;
            var jgc = jg[c];
            if (wrapped) jgc -= uSlot[c] * oldTerm;
            jg[c] = jgc + uc * vg;
            uSlot[c] = uc;
            vSlot[c] = vt[c];
        }
    }

}
