using System.Numerics;
using TorchSharp;
using static TorchSharp.torch;
using static Deq.Solvers.RowKernels;

namespace Deq.Solvers;

/// <summary>
/// Broyden's method kept as its steps alone, on the CPU, for solves that take full steps (no line search, no safeguard).
/// A full step is dx_k = -J_k^-1 g_k, so the update's column u_k = (dx_k - J_k^-1 dg_k) / (v_k . dg_k) is
/// dx_{k+1} / ||dx_k||^2, and with its row v_k = J_k^-T dx_k the inverse Jacobian is a product:
/// J_{k+1}^-1 y = J_k^-1 y + c_k (dx_k . J_k^-1 y) dx_{k+1}, c_k = 1 / ||dx_k||^2, from -I (Kelley, Iterative Methods for
/// Linear and Nonlinear Equations, 1995, ch. 7, "brsol"). So J_k^-1 g_new is one sweep over the steps, t = -g_new, then
/// t += c_i (dx_i . t) dx_{i+1}, which reads each slot once with t in cache, and the next step is
/// dx_{k+1} = -t ||dx_k||^2 / (dx_k . t + ||dx_k||^2), written into its slot where t was formed. One tensor of slots where
/// the U, V forms keep two, one new slot a step, no [batch, width] buffers of its own. A product cannot forget its oldest
/// update, so the step that would wrap the ring first turns the steps into the U, V form's factors (<see cref="ToFactors"/>)
/// and the solve goes on in that form.
/// The same iterates as the U, V forms in exact arithmetic, and to round-off in floating point: a denominator at or below
/// 1e-30, infinite or NaN drops the update there too (c_k = 0, dx_{k+1} = -t).
/// </summary>
internal sealed class BroydenSteps
{
    readonly SolveContext _ctx;
    readonly Tensor _steps;           // [batch, slots, width]: slot j holds dx_j
    Tensor? _pending;                 // [batch, width]: dx_slots, once the ring is full and a step follows
    readonly double[] _norm2, _c;     // [batch, slots]: ||dx_j||^2, and c_j (0 where update j was dropped)
    readonly int _slots, _width;

    /// <summary>Forces the choice on this thread (true: this form wherever it applies; false: never); null: wherever it
    /// applies, unless a test forces one of the U, V forms (<see cref="Broyden.ForceHostStep"/> and the like). For tests and benchmarks.</summary>
    internal static bool? Force { get => _force; set => _force = value; }
    [ThreadStatic] static bool? _force;

    /// <summary>Solves this form started on this thread (for tests: the form they mean to check did run).</summary>
    internal static int Started { get => _started; private set => _started = value; }
    [ThreadStatic] static int _started;

    /// <summary>Whether this form runs the solve: unless a test forces another form, wherever it applies.</summary>
    public static bool Suit(SolveContext ctx, Tensor z, BroydenOptions bo, int slots) =>
        (Force ?? (Broyden.ForceHostStep ?? Broyden.ForceImplicitV ?? Broyden.ForceRowWise) is null) &&
        Applies(bo, z.dtype, z.device_type, ctx.Batch * slots * ctx.Width);

    /// <summary>Whether the steps can carry a solve: full steps (no line search, no safeguard), CPU float32/float64, and
    /// <paramref name="entries"/> (the slots') within one span of bytes (<see cref="HostReductions.Spans"/>).</summary>
    internal static bool Applies(BroydenOptions bo, ScalarType dtype, DeviceType device, long entries) =>
        !bo.LineSearch && bo.Safeguard == 0 && device == DeviceType.CPU &&
        dtype is ScalarType.Float32 or ScalarType.Float64 && HostReductions.Spans(entries, dtype == ScalarType.Float32 ? 4 : 8);

    public BroydenSteps(SolveContext ctx, Iterate first, int slots)
    {
        (_ctx, _slots, _width) = (ctx, slots, (int)ctx.Width);
        Started++;
        var z = first.Z;
        _steps = ctx.Keep(torch.empty(ctx.Batch, slots, ctx.Width, dtype: z.dtype, device: z.device));
        (_norm2, _c) = (new double[ctx.Batch * slots], new double[ctx.Batch * slots]);
        // dx_0 = -J_0^-1 g_0 = g_0 = f(z0) - z0 (z0 may be a broadcast, f(z0) a view: libtorch's ops read either).
        using (var slot0 = _steps.select(1, 0)) slot0.copy_(first.Fz).sub_(z);
        if (z.dtype == ScalarType.Float32) Norms<float>(0);
        else Norms<double>(0);
    }

    /// <summary>Whether this step would wrap the ring (<see cref="ToFactors"/> first).</summary>
    public bool Full(SolveContext ctx) => ctx.Step - 1 >= _slots;

    /// <summary>One step: x = z + dx_k, f(x), and (unless no step can follow) dx_{k+1} into its slot, or the pending row.</summary>
    public Iterate Step(SolveContext ctx, Iterate it)
    {
        int k = ctx.Step - 1;
        var x = ctx.NewIterate();
        if (it.Z.is_contiguous()) Sum(it.Z, k, x);
        else using (var slot = _steps.select(1, k)) x.copy_(it.Z).add_(slot);   // the first z, when a broadcast: the same sum
        var fx = ctx.Evaluate(x);
        if (!fx.is_contiguous()) fx = fx.contiguous();   // a user's f may return a view: its rows, copied
        if (k + 1 >= ctx.Options.MaxIter - 1) return new Iterate(x, fx);   // the solve's last step: no next one to form
        if (k + 1 == _slots) _pending = torch.empty_like(x).DetachFromDisposeScope();
        ForElements((int)ctx.Batch, _width, k + 3, (from, to) =>
        {
            if (x.dtype == ScalarType.Float32) Next<float>(x, fx, k, from, to, (float)BroydenHostStep.Tiny);
            else Next<double>(x, fx, k, from, to, BroydenHostStep.Tiny);
        });
        return new Iterate(x, fx);
    }

    /// <summary>
    /// The U, V form's factors of the same inverse Jacobian, for the step that would wrap the ring: u_j = c_j dx_{j+1}
    /// into a new tensor; v_j = J_j^-T dx_j = -dx_j + sum_{i&lt;j} (u_i . dx_j) v_i over the steps, in place, bottom up
    /// (<see cref="BroydenCompactStep.Expand"/>); and J^-1 g = -dx_slots over the pending row. The steps tensor stays the
    /// solve's (kept); the caller owns the other two.
    /// </summary>
    public (Tensor U, Tensor V, Tensor JG) ToFactors()
    {
        var u = torch.empty_like(_steps).DetachFromDisposeScope();
        var w = BroydenCompactStep.NewW(_steps);
        ForElements((int)_ctx.Batch, _width, _slots * (_slots + 3) / 2, (from, to) =>
        {
            if (u.dtype == ScalarType.Float32) Columns<float>(u, (float[])w, from, to);
            else Columns<double>(u, (double[])w, from, to);
        });
        BroydenCompactStep.Expand(_steps, w, _slots);
        var jg = _pending!.neg_();
        _pending = null;
        return (u, _steps, jg);
    }

    /// <summary>Frees the pending row, if the solve ended before it was handed on.</summary>
    public void Release() => _pending?.Dispose();

    // u_j = c_j dx_{j+1} (dx_slots: the pending row) into U's slot j, and W[j, i] = c_i (dx_{i+1} . dx_j) for i < j.
    void Columns<T>(Tensor us, T[] w, int from, int to) where T : unmanaged, INumber<T>
    {
        ReadOnlySpan<T> steps = All<T>(_steps), pending = All<T>(_pending!);
        Span<T> uAll = All<T>(us);
        for (int i = from; i < to; i++)
        {
            int at = i * _slots;
            var rows = steps.Slice(at * _width, _slots * _width);
            for (int j = 0; j < _slots; j++)
            {
                var next = j + 1 < _slots ? rows.Slice((j + 1) * _width, _width) : pending.Slice(i * _width, _width);
                Scaled(next, T.CreateTruncating(_c[at + j]), uAll.Slice((at + j) * _width, _width));
                if (j == 0) continue;
                var dots = new T[j];
                Dots(rows.Slice(_width, j * _width), rows.Slice(j * _width, _width), dots, _width);   // dx_{i+1} . dx_j, i < j
                for (int e = 0; e < j; e++) w[(at + j) * _slots + e] = T.CreateTruncating(_c[at + e]) * dots[e];
            }
        }
    }

    // into = a s.
    static void Scaled<T>(ReadOnlySpan<T> s, T a, Span<T> into) where T : unmanaged, INumber<T>
    {
        ReadOnlySpan<Vector<T>> sv = Vectors(s);
        var iv = Vectors(into);
        var av = new Vector<T>(a);
        for (int c = 0; c < iv.Length; c++) iv[c] = av * sv[c];
        for (int c = iv.Length * Vector<T>.Count; c < into.Length; c++) into[c] = a * s[c];
    }

    void Sum(Tensor z, int k, Tensor x)
    {
        if (x.dtype == ScalarType.Float32) Sum<float>(All<float>(z), All<float>(_steps), All<float>(x), k);
        else Sum<double>(All<double>(z), All<double>(_steps), All<double>(x), k);
    }

    void Sum<T>(ReadOnlySpan<T> z, ReadOnlySpan<T> steps, Span<T> x, int k) where T : unmanaged, INumber<T>
    {
        for (int i = 0; i < (int)_ctx.Batch; i++)
        {
            ReadOnlySpan<T> row = z.Slice(i * _width, _width);
            Span<T> to = x.Slice(i * _width, _width);
            var s = steps.Slice((i * _slots + k) * _width, _width);
            ReadOnlySpan<Vector<T>> zv = Vectors(row), sv = Vectors(s);
            var xv = Vectors(to);
            for (int c = 0; c < xv.Length; c++) xv[c] = zv[c] + sv[c];
            for (int c = xv.Length * Vector<T>.Count; c < _width; c++) to[c] = row[c] + s[c];
        }
    }

    void Norms<T>(int slot) where T : unmanaged, INumber<T>
    {
        ReadOnlySpan<T> steps = All<T>(_steps);
        for (int i = 0; i < (int)_ctx.Batch; i++)
        {
            var s = steps.Slice((i * _slots + slot) * _width, _width);
            _norm2[i * _slots + slot] = double.CreateTruncating(Dot(s, s));
        }
    }

    // Elements [from, to): t = x - f(x) into dx_{k+1}'s row; the sweep t += c_i (dx_i . t) dx_{i+1}; then dx_{k+1} from t.
    void Next<T>(Tensor xs, Tensor fxs, int k, int from, int to, T tiny) where T : unmanaged, INumber<T>
    {
        ReadOnlySpan<T> x = All<T>(xs), fx = All<T>(fxs);
        Span<T> steps = All<T>(_steps), pending = k + 1 < _slots ? default : All<T>(_pending!);
        for (int i = from; i < to; i++)
        {
            var rows = steps.Slice(i * _slots * _width, _slots * _width);
            var t = k + 1 < _slots ? rows.Slice((k + 1) * _width, _width) : pending.Slice(i * _width, _width);
            var d = Start(x.Slice(i * _width, _width), fx.Slice(i * _width, _width), rows[.._width], t);
            int at = i * _slots;
            for (int j = 0; j < k; j++)
                d = AddAndDot(T.CreateTruncating(_c[at + j] * double.CreateTruncating(d)), rows.Slice((j + 1) * _width, _width), t);
            // d = dx_k . t, with t = J_k^-1 g_new: the update's denominator is d + ||dx_k||^2.
            double n2 = _norm2[at + k];
            T denom = d + T.CreateTruncating(n2);
            // An infinite denominator makes u 0 in the U, V forms: dropped too. So is a step whose squared norm underflows
            // to 0 (float32 steps under 1e-23), whose c would be infinite.
            bool kept = T.Abs(denom) > tiny && T.IsFinite(denom) && n2 > 0;
            _c[at + k] = kept ? 1 / n2 : 0;
            double scale = kept ? -n2 / double.CreateTruncating(denom) : -1;
            var n2Next = double.CreateTruncating(Scale(t, T.CreateTruncating(scale)));
            if (k + 1 < _slots) _norm2[at + k + 1] = n2Next;
        }
    }

    // t = x - f(x) (= -g_new); returns dx_0 . t.
    static T Start<T>(ReadOnlySpan<T> x, ReadOnlySpan<T> fx, ReadOnlySpan<T> dx0, Span<T> t) where T : unmanaged, INumber<T>
    {
        ReadOnlySpan<Vector<T>> xv = Vectors(x), fv = Vectors(fx), sv = Vectors(dx0);
        var tv = Vectors(t);
        Vector<T> a0 = Vector<T>.Zero, a1 = Vector<T>.Zero;
        int c = 0;
        for (; c + 2 <= tv.Length; c += 2)
        {
            var (t0, t1) = (xv[c] - fv[c], xv[c + 1] - fv[c + 1]);
            (tv[c], tv[c + 1]) = (t0, t1);
            a0 += sv[c] * t0;
            a1 += sv[c + 1] * t1;
        }
        for (; c < tv.Length; c++)
        {
            var tc = xv[c] - fv[c];
            tv[c] = tc;
            a0 += sv[c] * tc;
        }
        T sum = Vector.Sum(a0 + a1);
        for (int e = tv.Length * Vector<T>.Count; e < t.Length; e++)
        {
            t[e] = x[e] - fx[e];
            sum += dx0[e] * t[e];
        }
        return sum;
    }

    // t += a s; returns s . t (the new t).
    static T AddAndDot<T>(T a, ReadOnlySpan<T> s, Span<T> t) where T : unmanaged, INumber<T>
    {
        ReadOnlySpan<Vector<T>> sv = Vectors(s);
        var tv = Vectors(t);
        var av = new Vector<T>(a);
        Vector<T> a0 = Vector<T>.Zero, a1 = Vector<T>.Zero;
        int c = 0;
        for (; c + 2 <= tv.Length; c += 2)
        {
            Vector<T> s0 = sv[c], s1 = sv[c + 1];
            var (t0, t1) = (tv[c] + av * s0, tv[c + 1] + av * s1);
            (tv[c], tv[c + 1]) = (t0, t1);
            a0 += s0 * t0;
            a1 += s1 * t1;
        }
        for (; c < tv.Length; c++)
        {
            var tc = tv[c] + av * sv[c];
            tv[c] = tc;
            a0 += sv[c] * tc;
        }
        T sum = Vector.Sum(a0 + a1);
        for (int e = tv.Length * Vector<T>.Count; e < t.Length; e++)
        {
            t[e] += a * s[e];
            sum += s[e] * t[e];
        }
        return sum;
    }

    // t *= a; returns ||t||^2 (the new t).
    static T Scale<T>(Span<T> t, T a) where T : unmanaged, INumber<T>
    {
        var tv = Vectors(t);
        var av = new Vector<T>(a);
        Vector<T> a0 = Vector<T>.Zero, a1 = Vector<T>.Zero;
        int c = 0;
        for (; c + 2 <= tv.Length; c += 2)
        {
            var (t0, t1) = (tv[c] * av, tv[c + 1] * av);
            (tv[c], tv[c + 1]) = (t0, t1);
            a0 += t0 * t0;
            a1 += t1 * t1;
        }
        for (; c < tv.Length; c++)
        {
            var tc = tv[c] * av;
            tv[c] = tc;
            a0 += tc * tc;
        }
        T sum = Vector.Sum(a0 + a1);
        for (int e = tv.Length * Vector<T>.Count; e < t.Length; e++)
        {
            t[e] *= a;
            sum += t[e] * t[e];
        }
        return sum;
    }
}
