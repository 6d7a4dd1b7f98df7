using TorchSharp;
using static TorchSharp.torch;

namespace Deq.Solvers;

/// <summary>
/// The ledger for accelerators: the bookkeeping as tensors on the device (the lowest residual, the best
/// iterate mixed in by a torch.where mask, the traces), so the host reads one flag per check and everything
/// else once, at the end. The steps of each element's best and of its failure come from the masks kept per
/// bookkeeping step.
/// </summary>
internal sealed class DeviceLedger : SolveLedger
{
    readonly SolverOptions _o;
    readonly long _batch;
    Tensor _lowest = null!, _best = null!, _start = null!, _cap = null!, _growthCap = null!;
    readonly List<Tensor> _abs = [], _fzNorm = [];                        // per step, [batch]
    readonly List<(int Step, Tensor Improved, Tensor Failed)> _marks = [];  // per bookkeeping step, [batch] bool
    bool _started;
    // Scalars made once: each implicit double -> Scalar conversion allocates a native object.
    readonly Scalar _eps = 1e-12.ToScalar(), _divergence, _tol, _failedMark = double.NegativeInfinity.ToScalar();

    public DeviceLedger(SolverOptions options, long batch)
    {
        (_o, _batch) = (options, batch);
        _divergence = options.DivergenceFactor.ToScalar();
        _tol = options.Tol.ToScalar();
    }

    public override bool Record(Iterate it, int step)
    {
        using var scope = torch.NewDisposeScope();
        var abs = Keep(Residual(it.Fz, it.Z, _o.Norm));
        var fzNorm = Keep(Norms.PerRow(it.Fz, _o.Norm));
        _abs.Add(abs);
        _fzNorm.Add(fzNorm);
        if (!_started) Start(it, fzNorm);
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
        _marks.Add((step, Keep(improved), Keep(failed)));

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
        var abs = torch.stack(_abs.Take(steps));
        var fz = torch.stack(_fzNorm.Take(steps));
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
        if (_marks.Count > 0)
        {
            var marks = torch.stack([torch.stack(_marks.Select(m => m.Improved)), torch.stack(_marks.Select(m => m.Failed))]).cpu();
            var bits = marks.data<bool>().ToArray();                                           // [2, marks, batch]
            for (int k = 0; k < _marks.Count; k++)
                for (long i = 0; i < _batch; i++)
                {
                    if (bits[k * _batch + i]) bestStep[i] = _marks[k].Step;
                    if (bits[(_marks.Count + k) * _batch + i]) failedAt[i] = _marks[k].Step;
                }
        }
        return new LedgerSnapshot(Row(0), Row(1), Row(2), bestStep, failedAt,
            Host(_lowest).Select(double.IsNegativeInfinity).ToArray(), Host(_start), Host(_growthCap));
    }

    static double[] Host(Tensor t) => t.to(ScalarType.Float64).cpu().data<double>().ToArray();

    public override void Dispose()
    {
        foreach (var scalar in new[] { _eps, _divergence, _tol, _failedMark }) scalar.Dispose();
        foreach (var t in _abs.Concat(_fzNorm).Concat(_marks.SelectMany(m => new[] { m.Improved, m.Failed }))) t.Dispose();
        if (!_started) return;
        foreach (var t in new[] { _lowest, _best, _start, _cap, _growthCap })
            t?.Dispose();
    }
}
