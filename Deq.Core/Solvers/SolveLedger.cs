using TorchSharp;
using static TorchSharp.torch;

namespace Deq.Solvers;

/// <summary>
/// The per-element bookkeeping of one solve, kept on the device as tensors: the lowest residual, the
/// best iterate (mixed in by a torch.where mask), the step of the best, the last step each element was
/// healthy, and the traces. The host reads one flag per check and everything else once, at the end.
///
/// The stop rule, per element: the metric is ||f(z) - z|| (absolute) or ||f(z) - z|| / min(||f(z)||, cap)
/// (relative), where cap = start / sqrt(Tol) and start = max(||z0||, ||f(z0)||): a run-away iterate
/// cannot meet a relative tolerance just by making ||f(z)|| large. An element fails (and keeps its best
/// iterate) when its metric is NaN/Inf or exceeds DivergenceFactor times its lowest, or when ||f(z)||
/// exceeds MaxGrowth times its start; an element that has met the tolerance never fails.
/// Failed elements carry -Inf as their lowest residual, so they count as finished and never improve.
/// </summary>
internal sealed class SolveLedger : IDisposable
{
    const int AbsRow = 0, FzRow = 1, MetricRow = 2;
    readonly SolverOptions _o;
    readonly long _batch;
    Tensor _lowest = null!, _best = null!, _bestStep = null!, _liveUntil = null!, _start = null!, _cap = null!, _growthCap = null!;
    Tensor _trace = null!;      // [capacity, 3, batch]: abs, ||f(z)||, metric per step
    bool _started;
    // Scalars made once: each implicit double -> Scalar conversion allocates a native object (~3 us a step each).
    readonly Scalar _eps = 1e-12.ToScalar(), _divergence, _tol, _failedMark = double.NegativeInfinity.ToScalar();

    public SolveLedger(SolverOptions options, long batch)
    {
        (_o, _batch) = (options, batch);
        _divergence = options.DivergenceFactor.ToScalar();
        _tol = options.Tol.ToScalar();
    }

    /// <summary>
    /// Records step <paramref name="step"/> (1-based) at <paramref name="it"/>. Returns true while the solve
    /// should go on: some element neither met the tolerance nor failed (tested on check steps only).
    /// </summary>
    public bool Record(Iterate it, int step)
    {
        using var scope = torch.NewDisposeScope();
        var abs = Norms.PerRow(it.Fz - it.Z, _o.Norm);
        var fzNorm = Norms.PerRow(it.Fz, _o.Norm);
        if (!_started) Start(it, fzNorm);
        var metric = _o.Stop == StopMode.Absolute ? abs : abs / fzNorm.add(_eps).minimum(_cap);

        // Healthy: finite, not blown up against its own lowest, not run away. (NaN fails every comparison.)
        var ok = metric.le(_lowest.mul(_divergence)).logical_and_(fzNorm.le(_growthCap));
        var improved = metric.lt(_lowest).logical_and_(ok);
        _lowest = Swap(_lowest, torch.where(improved, metric, _lowest));
        _best = Swap(_best, torch.where(improved.unsqueeze(1), it.Z, _best));
        using (var at = step.ToScalar())
        {
            _bestStep.masked_fill_(improved, at);
            _liveUntil.masked_fill_(ok, at);
        }
        var failed = ok.logical_or_(_lowest.le(_tol)).logical_not_();
        _lowest.masked_fill_(failed, _failedMark);

        EnsureCapacity(step);
        _trace.select(0, step - 1).copy_(torch.stack([abs, fzNorm, metric]));
        bool check = step % _o.CheckEvery == 0 || step >= _o.MaxIter;
        if (!check) return true;
        if (_o.Over == StopScope.Batch && BatchMeets(abs, fzNorm))
        {
            BatchMetAt = step;
            return false;
        }
        return !_lowest.le(_tol).all().item<bool>();
    }

    /// <summary>The step at which the batch's combined residual met the tolerance (StopScope.Batch), or 0.</summary>
    public int BatchMetAt { get; private set; }

    // ||f(z) - z|| over the batch, relative to ||f(z)|| over the batch for the relative stop.
    bool BatchMeets(Tensor abs, Tensor fzNorm)
    {
        var total = _o.Norm == ResidualNorm.L2 ? abs.square().sum().sqrt() : abs.max();
        if (_o.Stop == StopMode.Relative)
            total = total / ((_o.Norm == ResidualNorm.L2 ? fzNorm.square().sum().sqrt() : fzNorm.max()) + 1e-12);
        return total.le(_tol).item<bool>();
    }

    void Start(Iterate it, Tensor fzNorm)
    {
        _started = true;
        var zNorm = Norms.PerRow(it.Z, _o.Norm);
        _start = Keep(torch.maximum(zNorm, fzNorm).clamp_min(1e-30));
        _cap = Keep(_start / Math.Sqrt(_o.Tol));
        _growthCap = Keep(_start * _o.MaxGrowth);
        _lowest = Keep(torch.full_like(fzNorm, double.PositiveInfinity));
        _best = Keep(it.Z.clone());
        _bestStep = Keep(torch.zeros(_batch, dtype: ScalarType.Int64, device: it.Z.device));
        _liveUntil = Keep(torch.zeros(_batch, dtype: ScalarType.Int64, device: it.Z.device));
        _trace = Keep(torch.zeros(Math.Min(_o.MaxIter, 256), 3, _batch, dtype: fzNorm.dtype, device: fzNorm.device));
    }

    // Doubles the trace buffer when a solve outruns it (only past 256 steps), so a step costs one write.
    void EnsureCapacity(int step)
    {
        long capacity = _trace.shape[0];
        if (step <= capacity) return;
        var bigger = torch.zeros(Math.Min(_o.MaxIter, 2 * capacity), 3, _batch, dtype: _trace.dtype, device: _trace.device);
        bigger.narrow(0, 0, capacity).copy_(_trace);
        _trace.Dispose();
        _trace = Keep(bigger);
    }

    static Tensor Keep(Tensor t) => t.DetachFromDisposeScope();

    static Tensor Swap(Tensor old, Tensor next)
    {
        old.Dispose();
        return Keep(next);
    }

    /// <summary>The best iterate, [batch, width] (null before the first step); ownership passes to the caller.</summary>
    public Tensor? TakeBest()
    {
        var best = _started ? _best : null;
        _best = null!;
        return best;
    }

    /// <summary>Everything the result needs, copied to the host once.</summary>
    public LedgerSnapshot Snapshot(int steps)
    {
        if (!_started) return LedgerSnapshot.Empty(_batch);
        using var scope = torch.NewDisposeScope();
        var trace = _trace.narrow(0, 0, steps).to(ScalarType.Float64).cpu();
        var flat = trace.data<double>().ToArray();
        double At(int s, int row, long i) => flat[(s * 3 + row) * _batch + i];
        var abs = new double[_batch, steps];
        var fz = new double[_batch, steps];
        var metric = new double[_batch, steps];
        for (long i = 0; i < _batch; i++)
            for (int s = 0; s < steps; s++)
                (abs[i, s], fz[i, s], metric[i, s]) = (At(s, AbsRow, i), At(s, FzRow, i), At(s, MetricRow, i));
        return new LedgerSnapshot(abs, fz, metric,
            Host(_bestStep).Select(v => (int)v).ToArray(), Host(_liveUntil).Select(v => (int)v).ToArray(),
            Host(_lowest).Select(double.IsNegativeInfinity).ToArray(), Host(_start), Host(_growthCap));
    }

    static double[] Host(Tensor t) => t.to(ScalarType.Float64).cpu().data<double>().ToArray();

    public void Dispose()
    {
        foreach (var scalar in new[] { _eps, _divergence, _tol, _failedMark }) scalar.Dispose();
        if (!_started) return;
        foreach (var t in new[] { _lowest, _best, _bestStep, _liveUntil, _start, _cap, _growthCap, _trace })
            t?.Dispose();
    }
}

/// <summary>The ledger on the host: traces [batch, steps] and per-element markers.</summary>
internal sealed record LedgerSnapshot(double[,] Abs, double[,] FzNorm, double[,] Metric, int[] BestStep, int[] LiveUntil,
    bool[] Failed, double[] Start, double[] GrowthCap)
{
    public static LedgerSnapshot Empty(long batch) => new(new double[batch, 0], new double[batch, 0], new double[batch, 0],
        new int[batch], new int[batch], new bool[batch], new double[batch], new double[batch]);
}
