using TorchSharp;
using static TorchSharp.torch;

namespace Deq.Solvers;

/// <summary>
/// The ledger for accelerators: the bookkeeping as tensors on the device (the lowest residual, the best
/// iterate mixed in by a torch.where mask, the traces), so the host reads one flag per check and everything
/// else once, at the end. The steps of each element's best and of its failure come from the masks kept per
/// bookkeeping step. A step costs about 20 tensor ops, queued without a wait but for the check's one flag.
/// </summary>
internal sealed class DeviceLedger : SolveLedger
{
    Tensor _lowest = null!, _best = null!, _start = null!, _cap = null!, _growthCap = null!;
    // Grown by doubling, so the handles a solve holds do not grow with its steps:
    Tensor _trace = null!;                      // [capacity, 2, batch]: ||f(z) - z||, ||f(z)|| per step
    Tensor _marks = null!;                      // [capacity, 2, batch] bool: improved, failed per bookkeeping step
    readonly List<int> _markSteps = [];
    bool _started;
    // Scalars made once: each implicit double -> Scalar conversion allocates a native object.
    readonly Scalar _eps = 1e-12.ToScalar(), _divergence, _tol, _failedMark = double.NegativeInfinity.ToScalar();

    public DeviceLedger(SolverOptions options, long batch) : base(options, batch)
    {
        _divergence = options.DivergenceFactor.ToScalar();
        _tol = options.Tol.ToScalar();
    }

    public override bool Record(Iterate it, int step)
    {
        using var scope = torch.NewDisposeScope();
        var abs = Residual(it, _o.Norm);
        var fzNorm = Norms.PerRow(it.Fz, _o.Norm);
        if (!_started) Start(it, fzNorm);
        _trace = Grown(_trace, step);
        _trace.select(0, step - 1).copy_(torch.stack([abs, fzNorm]));
        bool check = IsCheck(_o, step);
        if (!check && step > 1) return true;

        var metric = Metric(abs, fzNorm);
        // Healthy: finite, not blown up against its own lowest, not run away. (NaN fails every comparison.)
        // Improved implies healthy: metric < lowest <= DivergenceFactor x lowest.
        var inReach = fzNorm.le(_growthCap);
        var ok = metric.le(_lowest.mul(_divergence)).logical_and_(inReach);
        var improved = metric.lt(_lowest).logical_and_(inReach);
        _lowest = Swap(_lowest, torch.where(improved, metric, _lowest));
        _best = Swap(_best, torch.where(improved.unsqueeze(1), it.Z, _best));
        var failed = ok.logical_or_(_lowest.le(_tol)).logical_not_();
        _lowest.masked_fill_(failed, _failedMark);
        _marks = Grown(_marks, _markSteps.Count + 1);
        _marks.select(0, _markSteps.Count).copy_(torch.stack([improved, failed]));
        _markSteps.Add(step);

        if (!check) return true;
        if (_o.Over == StopScope.Batch && BatchMeets(abs, fzNorm))
        {
            BatchMetAt = step;
            return false;
        }
        return !_lowest.le(_tol).all().item<bool>();
    }

    // The stop rule's residual, elementwise: the same on one step's [batch] as on the stacked trace.
    Tensor Metric(Tensor abs, Tensor fzNorm) =>
        _o.Stop == StopMode.Absolute ? abs : abs / fzNorm.add(_eps).minimum(_cap);

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
        long capacity = Math.Min(_o.MaxIter, 64);
        _trace = Keep(torch.zeros(capacity, 2, _batch, dtype: fzNorm.dtype, device: fzNorm.device));
        _marks = Keep(torch.zeros(capacity, 2, _batch, dtype: ScalarType.Bool, device: fzNorm.device));
    }

    // The buffer itself while it has `rows` rows, else one of twice the rows holding its contents.
    static Tensor Grown(Tensor buffer, long rows)
    {
        long capacity = buffer.shape[0];
        if (rows <= capacity) return buffer;
        var bigger = torch.zeros([Math.Max(rows, 2 * capacity), 2, buffer.shape[2]], dtype: buffer.dtype, device: buffer.device);
        bigger.narrow(0, 0, capacity).copy_(buffer);
        return Swap(buffer, bigger);
    }

    static Tensor Keep(Tensor t) => t.DetachFromDisposeScope();

    static Tensor Swap(Tensor old, Tensor next)
    {
        old.Dispose();
        return Keep(next);
    }

    public override Tensor? TakeBest()
    {
        var best = _started ? _best : null;
        _best = null!;
        return best;
    }

    public override LedgerSnapshot Snapshot(int steps)
    {
        if (!_started) return LedgerSnapshot.Empty(_batch);
        using var scope = torch.NewDisposeScope();
        var trace = _trace.narrow(0, 0, steps);
        var (abs, fz) = (trace.select(1, 0), trace.select(1, 1));
        var traces = torch.stack([abs, fz, Metric(abs, fz)]).to(ScalarType.Float64).cpu();   // [3, steps, batch]
        var flat = traces.data<double>().ToArray();
        double[,] Row(int row)
        {
            var t = new double[_batch, steps];
            for (long i = 0; i < _batch; i++)
                for (int s = 0; s < steps; s++) t[i, s] = flat[((long)row * steps + s) * _batch + i];
            return t;
        }
        var (bestStep, failedAt) = (new int[_batch], new int[_batch]);
        int count = _markSteps.Count;
        if (count > 0)
        {
            var bits = _marks.narrow(0, 0, count).cpu().data<bool>().ToArray();                // [marks, 2, batch]
            for (int k = 0; k < count; k++)
                for (long i = 0; i < _batch; i++)
                {
                    if (bits[(k * 2) * _batch + i]) bestStep[i] = _markSteps[k];
                    if (bits[(k * 2 + 1) * _batch + i]) failedAt[i] = _markSteps[k];
                }
        }
        return new LedgerSnapshot(Row(0), Row(1), Row(2), bestStep, failedAt,
            Residuals.ToHost(_lowest).Select(double.IsNegativeInfinity).ToArray(), Residuals.ToHost(_start), Residuals.ToHost(_growthCap));
    }

    public override void Dispose()
    {
        foreach (var scalar in new[] { _eps, _divergence, _tol, _failedMark }) scalar.Dispose();
        if (!_started) return;
        foreach (var t in new[] { _lowest, _best, _start, _cap, _growthCap, _trace, _marks })
            t?.Dispose();
    }
}
