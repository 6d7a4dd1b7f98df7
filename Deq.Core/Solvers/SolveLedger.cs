using TorchSharp;
using static TorchSharp.torch;

namespace Deq.Solvers;

/// <summary>
/// The per-element bookkeeping of one solve: traces, the lowest residual, the best iterate, the step of
/// the best and of a failure, and the stop test.
///
/// The stop rule, per element: the metric is ||f(z) - z|| (absolute) or ||f(z) - z|| / min(||f(z)|| + 1e-12, cap)
/// (relative), where cap = start / sqrt(Tol) and start = max(||z0||, ||f(z0)||): a run-away iterate
/// cannot meet a relative tolerance just by making ||f(z)|| large. An element fails (and keeps its best
/// iterate) when its metric is NaN/Inf or exceeds DivergenceFactor times its lowest, or when ||f(z)||
/// exceeds MaxGrowth times its start; an element that has met the tolerance never fails.
/// Failed elements carry -Inf as their lowest residual, so they count as finished and never improve.
///
/// Every step records its residual norms (the traces). The rest, the bookkeeping, runs on step 1 and on
/// check steps (every CheckEvery steps, and the last by MaxIter): with CheckEvery = k the best iterate is the
/// best of those steps.
///
/// Two back ends keep the same rule. On an accelerator (<see cref="DeviceLedger"/>) the bookkeeping stays
/// in device tensors and the host reads one flag per check. On the CPU (<see cref="HostLedger"/>) reading
/// memory costs nothing and every tensor op costs a dispatch and a fresh output (3-5 us on the toy, as much
/// as the whole rule in C#), so the host computes the two norms from the tensors' memory (<see cref="HostReductions"/>)
/// and runs the rule over them in float64. A test holds the two equal (the norms to round-off).
/// </summary>
internal abstract class SolveLedger : IDisposable
{
    /// <summary>
    /// Forces a back end on this thread (true: device, false: host) for the ledger and Anderson's mixing; null
    /// picks by the tensors' device. For tests, which run the device paths on the CPU.
    /// </summary>
    internal static bool? ForceDevice { get => _forceDevice; set => _forceDevice = value; }
    [ThreadStatic] static bool? _forceDevice;

    /// <summary>Whether the solve's own arithmetic on <paramref name="t"/> stays in tensor ops (accelerators) or runs in C# (CPU).</summary>
    internal static bool OnDevice(Tensor t) => ForceDevice ?? t.device_type != DeviceType.CPU;

    public static SolveLedger For(SolverOptions options, long batch, Tensor z0) =>
        OnDevice(z0) ? new DeviceLedger(options, batch) : new HostLedger(options, batch);

    protected SolveLedger(SolverOptions options, long batch) => (_o, _batch) = (options, batch);

    protected readonly SolverOptions _o;
    protected readonly long _batch;

    /// <summary>
    /// Records step <paramref name="step"/> (1-based) at <paramref name="it"/>. Returns true while the solve
    /// should go on: some element neither met the tolerance nor failed (tested on check steps only).
    /// </summary>
    public abstract bool Record(Iterate it, int step);

    /// <summary>The step at which the batch's combined residual met the tolerance (StopScope.Batch), or 0.</summary>
    public int BatchMetAt { get; protected set; }

    /// <summary>The best iterate, [batch, width] (null before the first step); ownership passes to the caller.</summary>
    public abstract Tensor? TakeBest();

    /// <summary>Everything the result needs, on the host.</summary>
    public abstract LedgerSnapshot Snapshot(int steps);

    public abstract void Dispose();

    protected static bool IsCheck(SolverOptions o, int step) => step % o.CheckEvery == 0 || step >= o.MaxIter;

    /// <summary>||f(z) - z|| per row (from the step's own f(z) - z when it kept one).</summary>
    internal static Tensor Residual(Iterate it, ResidualNorm norm) => Norms.PerRow(it.Residual ?? it.Fz - it.Z, norm);
}

/// <summary>
/// The ledger on the host: traces [batch, steps], the step of each element's best (0: none) and the step
/// at which it failed (0: it did not).
/// </summary>
internal sealed record LedgerSnapshot(double[,] Abs, double[,] FzNorm, double[,] Metric, int[] BestStep, int[] FailedAt,
    bool[] Failed, double[] Start, double[] GrowthCap)
{
    public static LedgerSnapshot Empty(long batch) => new(new double[batch, 0], new double[batch, 0], new double[batch, 0],
        new int[batch], new int[batch], new bool[batch], new double[batch], new double[batch]);
}
