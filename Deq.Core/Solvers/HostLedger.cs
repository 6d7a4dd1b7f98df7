using TorchSharp;
using static TorchSharp.torch;

namespace Deq.Solvers;

/// <summary>
/// The ledger for CPU tensors: each step reads the two norms from the tensors' memory (<see cref="HostReductions"/>; no
/// copy to make: the host is the device); the rule runs in C# in float64, and the best iterate takes one copy when every
/// element improved, a where (on a mask the host writes in place) when some did.
/// </summary>
internal sealed class HostLedger : SolveLedger
{
    readonly List<double[]> _abs = [], _fzNorm = [];     // per step
    double[] _lowest = null!, _start = null!, _cap = null!, _growthCap = null!;
    int[] _bestStep = null!, _failedAt = null!;
    Tensor? _best, _improved;   // [batch, width], and [batch, 1] bool written by the host
    bool _bestIsIterate;        // _best is a handle on an iterate, not a tensor of its own

    public HostLedger(SolverOptions options, long batch) : base(options, batch) { }

    public override bool Record(Iterate it, int step)
    {
        var (abs, fzNorm) = ResidualNorms(it);
        _abs.Add(abs);
        _fzNorm.Add(fzNorm);
        if (_best is null) Start(it, fzNorm);
        bool check = IsCheck(_o, step);
        if (!check && step > 1) return true;

        int improvedCount = 0;
        bool done = true;
        var mask = _improved!.bytes;
        for (long i = 0; i < _batch; i++)
        {
            double metric = Metric(abs[i], fzNorm[i], _cap[i]);
            // Healthy: finite, not blown up against its own lowest, not run away. (NaN fails every comparison.)
            bool inReach = fzNorm[i] <= _growthCap[i];
            bool ok = metric <= _lowest[i] * _o.DivergenceFactor && inReach;
            bool improved = metric < _lowest[i] && inReach;
            mask[(int)i] = improved ? (byte)1 : (byte)0;
            if (improved)
            {
                (_lowest[i], _bestStep[i]) = (metric, step);
                improvedCount++;
            }
            if (!(ok || _lowest[i] <= _o.Tol)) (_lowest[i], _failedAt[i]) = (double.NegativeInfinity, step);
            done &= _lowest[i] <= _o.Tol;
        }
        if (improvedCount == _batch)
        {
            // Every element improved: keep a second handle on the iterate instead of copying it. Iterates are new
            // tensors that nothing writes into, so its storage simply outlives the driver's handle (the same memory
            // as a copy, one op less a step); TakeBest copies it once, so the result never aliases an iterate.
            _best!.Dispose();
            (_best, _bestIsIterate) = (it.Z.detach().DetachFromDisposeScope(), true);
        }
        else if (improvedCount > 0)
        {
            if (RowsReadable(it.Z, _best!)) TakeRows(it.Z, mask);
            else
            {
                var mixed = torch.where(_improved, it.Z, _best!).DetachFromDisposeScope();
                _best!.Dispose();
                (_best, _bestIsIterate) = (mixed, false);
            }
        }

        if (!check) return true;
        if (_o.Over == StopScope.Batch && BatchMeets(abs, fzNorm))
        {
            BatchMetAt = step;
            return false;
        }
        return !done;
    }

    static bool RowsReadable(Tensor z, Tensor best) =>
        z.device_type == DeviceType.CPU && best.device_type == DeviceType.CPU && z.dtype == best.dtype &&
        z.dim() == 2 && best.dim() == 2 && z.is_contiguous() && best.is_contiguous() && HostReductions.Fits(z);

    // The improved elements' rows of z into the best, in C#, where torch.where cost a dispatch and a broadcast (9 us a
    // step on the toy, more than half the ledger's time there). An owned best takes them in place; a best that is a
    // handle on an earlier iterate (never written: others may hold it) becomes a tensor of its own, as where's output did.
    void TakeRows(Tensor z, Span<byte> improved)
    {
        var from = z.bytes;
        int row = from.Length / (int)_batch;
        if (_bestIsIterate)
        {
            var own = torch.empty_like(_best!).DetachFromDisposeScope();
            Span<byte> to = own.bytes, old = _best!.bytes;
            for (int i = 0; i < _batch; i++)
                (improved[i] != 0 ? from : old).Slice(i * row, row).CopyTo(to.Slice(i * row, row));
            _best.Dispose();
            (_best, _bestIsIterate) = (own, false);
            return;
        }
        var into = _best!.bytes;
        for (int i = 0; i < _batch; i++)
            if (improved[i] != 0) from.Slice(i * row, row).CopyTo(into.Slice(i * row, row));
    }

    // ||f(z) - z|| and ||f(z)|| per row: read from the tensors' memory where the host can, else as tensor ops.
    (double[] Abs, double[] FzNorm) ResidualNorms(Iterate it)
    {
        if (Residuals.FromMemory(it.Z, it.Fz, _o.Norm, it.Residual) is { } read) return read;
        using (torch.NewDisposeScope())
            return (Residuals.ToHost(Residual(it, _o.Norm)), Residuals.ToHost(Norms.PerRow(it.Fz, _o.Norm)));
    }

    double Metric(double abs, double fzNorm, double cap) =>
        _o.Stop == StopMode.Absolute ? abs : abs / Math.Min(fzNorm + 1e-12, cap);

    // ||f(z) - z|| over the batch, relative to ||f(z)|| over the batch for the relative stop.
    bool BatchMeets(double[] abs, double[] fzNorm)
    {
        double Total(double[] v) => _o.Norm == ResidualNorm.L2 ? Math.Sqrt(v.Sum(x => x * x)) : v.Max();
        double total = Total(abs);
        if (_o.Stop == StopMode.Relative) total /= Total(fzNorm) + 1e-12;
        return total <= _o.Tol;
    }

    void Start(Iterate it, double[] fzNorm)
    {
        double[] zNorm;
        if (HostReductions.Reads(it.Z, _o.Norm)) zNorm = HostReductions.Rows(it.Z, null).F;
        else using (torch.NewDisposeScope()) zNorm = Residuals.ToHost(Norms.PerRow(it.Z, _o.Norm));
        _start = zNorm.Zip(fzNorm, (z, f) => Math.Max(Math.Max(z, f), 1e-30)).ToArray();
        _cap = _start.Select(s => s / Math.Sqrt(_o.Tol)).ToArray();
        _growthCap = _start.Select(s => s * _o.MaxGrowth).ToArray();
        _lowest = Enumerable.Repeat(double.PositiveInfinity, (int)_batch).ToArray();
        (_bestStep, _failedAt) = (new int[_batch], new int[_batch]);
        // A handle on z0, not a copy: step 1 replaces it when every element is finite, and TakeRows copies it otherwise.
        (_best, _bestIsIterate) = (it.Z.detach().DetachFromDisposeScope(), true);
        _improved = torch.zeros([_batch, 1], dtype: ScalarType.Bool, device: it.Z.device).DetachFromDisposeScope();
    }

    public override Tensor? TakeBest()
    {
        var best = _best;
        _best = null;
        if (best is null || !_bestIsIterate) return best;
        var own = best.clone().DetachFromDisposeScope();
        best.Dispose();
        return own;
    }

    public override LedgerSnapshot Snapshot(int steps)
    {
        if (_lowest is null) return LedgerSnapshot.Empty(_batch);
        var (abs, fz, metric) = (new double[_batch, steps], new double[_batch, steps], new double[_batch, steps]);
        for (int s = 0; s < steps; s++)
            for (long i = 0; i < _batch; i++)
                (abs[i, s], fz[i, s], metric[i, s]) = (_abs[s][i], _fzNorm[s][i], Metric(_abs[s][i], _fzNorm[s][i], _cap[i]));
        return new LedgerSnapshot(abs, fz, metric, _bestStep, _failedAt, _lowest.Select(double.IsNegativeInfinity).ToArray(), _start, _growthCap);
    }

    public override void Dispose()
    {
        _best?.Dispose();
        _improved?.Dispose();
    }
}
