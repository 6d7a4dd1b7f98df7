using Deq.Implicit;
using Deq.Solvers;
using TorchSharp;
using static TorchSharp.torch;

namespace Deq.Training;

/// <summary>
/// Where one training step's memory goes, per phase, in bytes (see <see cref="Copies"/> for copies of z).
/// Parameters, gradients and optimizer state are computed from sizes; the other phases are measured by
/// <see cref="Measure"/>. The step's peak is the static part plus the larger of the forward solve and the
/// graph with backward on top: the forward solve's state is freed before the graph of f at z* is built.
/// </summary>
/// <param name="StateBytes">Bytes of one z (z0's size).</param>
/// <param name="ParameterBytes">The module's parameters.</param>
/// <param name="GradientBytes">Their gradients (parameters that require grad).</param>
/// <param name="OptimizerStateBytes">Optimizer state: slots per parameter (Adam: 2) times the gradient bytes.</param>
/// <param name="ForwardSolveBytes">Peak during the forward solve above the step's start (0 when no solver ran, as in the unrolled stack).</param>
/// <param name="GraphBytes">Resident once <see cref="Equilibrium.Solve"/> returned: the graph of f at z* (for the unrolled stack: all L applications).</param>
/// <param name="BackwardBytes">Peak during the loss and backward above the graph: the adjoint solve's state and the vector-Jacobian products.</param>
/// <param name="Method">How the phases were measured.</param>
public sealed record MemoryLedger(long StateBytes, long ParameterBytes, long GradientBytes, long OptimizerStateBytes,
    long ForwardSolveBytes, long GraphBytes, long BackwardBytes, string Method)
{
    /// <summary>The CPU method, in words.</summary>
    public const string CpuMethod =
        "CPU resident memory on Linux: GC, then VmRSS before the step; the peak (VmHWM) is reset by writing 5 to /proc/self/clear_refs " +
        "before the forward solve and again before backward; parameters, gradients and optimizer state from tensor sizes";

    /// <summary>Parameters, gradients and optimizer state: resident for the whole run.</summary>
    public long StaticBytes => ParameterBytes + GradientBytes + OptimizerStateBytes;

    /// <summary>The step's own peak: the forward solve, or the graph with backward on top, whichever is larger.</summary>
    public long StepPeakBytes => Math.Max(ForwardSolveBytes, GraphBytes + BackwardBytes);

    /// <summary>The training step's peak, static part included.</summary>
    public long PeakBytes => StaticBytes + StepPeakBytes;

    /// <summary><paramref name="bytes"/> in copies of z (NaN when z is empty).</summary>
    public double Copies(long bytes) => StateBytes > 0 ? (double)bytes / StateBytes : double.NaN;

    /// <summary>The phases in order, with their bytes: for tables and stacked bars.</summary>
    public IReadOnlyList<KeyValuePair<string, long>> Phases =>
    [
        new("parameters", ParameterBytes), new("gradients", GradientBytes), new("optimizer state", OptimizerStateBytes),
        new("forward solve (peak)", ForwardSolveBytes), new("graph of f (resident)", GraphBytes), new("backward (peak above graph)", BackwardBytes),
    ];

    /// <summary>One line per phase and the peak, in MiB and copies of z.</summary>
    public override string ToString() =>
        string.Join(Environment.NewLine, Phases.Append(new("step peak", PeakBytes))
            .Select(p => $"{p.Key,-30} {p.Value / 1048576.0,10:F1} MiB {Copies(p.Value),8:F1} x z"));

    /// <summary>
    /// Runs one training step, <c>Equilibrium.Solve(f, z0, options)</c> then <c>Equilibrium.Backward(loss(z*))</c>,
    /// and measures each phase. The step is real: gradients accumulate into <paramref name="module"/>'s parameters
    /// (those without a gradient get a zero one first, so that backward accumulates in place and the gradients
    /// count once, as a static row). Run it after a warm-up step, in a process that has not peaked since, on CPU
    /// on Linux. On CUDA it refuses: TorchSharp 0.107 exposes no allocator statistics.
    /// </summary>
    /// <param name="f">z -> f(z; x), with x and the parameters bound.</param>
    /// <param name="z0">Initial guess; its size is one z.</param>
    /// <param name="options">Solvers and adjoint (null: the defaults).</param>
    /// <param name="loss">z* -> a scalar loss.</param>
    /// <param name="module">The parameters, for the static rows (null: those rows are 0).</param>
    /// <param name="optimizerSlots">Optimizer tensors per parameter (Adam 2, SGD with momentum 1, plain SGD 0).</param>
    /// <param name="afterSolve">Runs once the equilibrium is solved, before the graph is measured: free there what backward does not need, as the model does (the models' cells: <c>Release</c>).</param>
    public static MemoryLedger Measure(Func<Tensor, Tensor> f, Tensor z0, EquilibriumOptions? options, Func<Tensor, Tensor> loss,
        nn.Module? module = null, int optimizerSlots = 2, Action? afterSolve = null)
    {
        if (z0.device_type != DeviceType.CPU)
            throw new InvalidOperationException($"MemoryLedger.Measure: z0 is on {z0.device}; the ledger measures CPU resident memory, and on CUDA " +
                "TorchSharp 0.107 exposes no allocator statistics (torch.cuda.max_memory_allocated); measure GPU memory from PyTorch or nvidia-smi.");
        if (optimizerSlots < 0) throw new ArgumentOutOfRangeException(nameof(optimizerSlots), optimizerSlots, "MemoryLedger.Measure: optimizerSlots must be non-negative.");
        var o = options ?? EquilibriumOptions.Default;
        var (parameterBytes, gradientBytes) = module is null ? (0L, 0L) : PrepareGradients(module);

        using var scope = torch.NewDisposeScope();
        long start = Settle(), forwardPeak = 0;
        ResetPeak();
        var inner = o.ForwardSolver;
        Solver measured = (g, z) =>
        {
            var r = inner(g, z);
            forwardPeak = Math.Max(forwardPeak, Peak() - start);
            return r;
        };
        var eq = Equilibrium.Solve(f, z0, o with { Forward = measured });
        afterSolve?.Invoke();
        long graph = Rss() - start;
        ResetPeak();
        Equilibrium.Backward(loss(eq.Z));
        long backward = Peak() - start - graph;
        return new MemoryLedger(z0.numel() * z0.element_size(), parameterBytes, gradientBytes, optimizerSlots * gradientBytes,
            Math.Max(0, forwardPeak), Math.Max(0, graph), Math.Max(0, backward), CpuMethod);
    }

    static (long Parameters, long Gradients) PrepareGradients(nn.Module module)
    {
        long parameters = 0, gradients = 0;
        using var scope = torch.NewDisposeScope();
        foreach (var p in module.parameters())
        {
            long bytes = p.numel() * p.element_size();
            parameters += bytes;
            if (!p.requires_grad) continue;
            gradients += bytes;
            if (p.grad is null)
                using (torch.no_grad()) p.grad = torch.zeros_like(p);
        }
        return (parameters, gradients);
    }

    static long Settle()
    {
        ProcessMemory.Settle();
        return Rss();
    }

    static long Rss() => ProcessMemory.Now().RssBytes ?? throw Unreadable();

    static long Peak() => ProcessMemory.Now().PeakRssBytes ?? throw Unreadable();

    static InvalidOperationException Unreadable() =>
        new("MemoryLedger.Measure: /proc/self/status is unreadable; the ledger measures resident memory on Linux only.");

    static void ResetPeak()
    {
        if (!ProcessMemory.TryResetPeak(out var why))
            throw new InvalidOperationException($"MemoryLedger.Measure: cannot reset the peak through /proc/self/clear_refs ({why}); it needs Linux 4.0+.");
    }
}
