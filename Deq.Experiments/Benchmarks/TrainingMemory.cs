using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using System.Text.Json.Serialization;
using Deq.Implicit;
using Deq.Solvers;
using Deq.Training;
using TorchSharp;
using static TorchSharp.torch;

namespace Deq.Experiments.Benchmarks;

/// <summary>
/// Peak training memory of one step (forward + backward) of an equilibrium core, DEQ or unrolled.
/// Each configuration runs in a fresh process (`deq bench memory-probe --json`), since a process's
/// peak can only be reset, not attributed, and allocators keep what earlier configurations freed.
/// </summary>
public static class TrainingMemory
{
    /// <summary>The CPU method, as the measurements state it.</summary>
    public const string CpuMethod =
        "CPU peak resident set size of a fresh single-threaded process: the same code paths run on a small core for a second first (so .NET's tiered JIT is done), " +
        "then build the core and input, one warm-up step (1 iteration), GC, " +
        "reset the peak (write 5 to /proc/self/clear_refs), one measured step; result = VmHWM after - VmRSS before; " +
        "the child's allocator is what any user's process gets (no MALLOC_* variable set by the benchmark; Deq.Native.FreedMemory applies itself)";

    static readonly JsonSerializerOptions Json = new()
    {
        Converters = { new JsonStringEnumConverter(JsonNamingPolicy.CamelCase) },
        NumberHandling = JsonNumberHandling.AllowNamedFloatingPointLiterals,
    };

    /// <summary>Serialises a measurement as one JSON line.</summary>
    public static string ToJson(MemoryMeasurement m) => JsonSerializer.Serialize(m, Json);

    /// <summary>Parses what <see cref="ToJson(MemoryMeasurement)"/> wrote.</summary>
    public static MemoryMeasurement FromJson(string json) =>
        JsonSerializer.Deserialize<MemoryMeasurement>(json, Json) ?? throw new InvalidOperationException("memory probe: empty JSON");

    /// <summary>
    /// Measures <paramref name="config"/> in a fresh `deq bench memory-probe` process and returns what it printed.
    /// Throws <see cref="InvalidOperationException"/> with the child's error when it fails or cannot be found.
    /// </summary>
    public static MemoryMeasurement MeasureInFreshProcess(MemoryProbeConfig config, TimeSpan? timeout = null) =>
        FromJson(RunChild(config, ProbeArguments(config), timeout));

    /// <summary>The minimum of <paramref name="runs"/> fresh-process probes of <paramref name="config"/> (by peak), as the targets are defined.</summary>
    public static MemoryMeasurement MinimumOfFreshProcesses(MemoryProbeConfig config, int runs = 3, TimeSpan? timeout = null) =>
        Enumerable.Range(0, Math.Max(1, runs)).Select(_ => MeasureInFreshProcess(config, timeout)).MinBy(m => m.PeakBytes)!;

    /// <summary>The <see cref="MemoryLedger"/> of one step of <paramref name="config"/>, measured in a fresh `deq bench memory-probe --ledger` process.</summary>
    public static MemoryLedger LedgerInFreshProcess(MemoryProbeConfig config, TimeSpan? timeout = null) =>
        LedgerFromJson(RunChild(config, [.. ProbeArguments(config), "--ledger"], timeout));

    /// <summary>Parses what <see cref="ToJson(MemoryLedger)"/> wrote.</summary>
    public static MemoryLedger LedgerFromJson(string json) =>
        JsonSerializer.Deserialize<MemoryLedger>(json, Json) ?? throw new InvalidOperationException("memory probe: empty ledger JSON");

    /// <summary>Serialises a ledger as one JSON line.</summary>
    public static string ToJson(MemoryLedger ledger) => JsonSerializer.Serialize(ledger, Json);

    static string RunChild(MemoryProbeConfig config, string[] arguments, TimeSpan? timeout)
    {
        config.Validate();
        var (file, prefix) = DeqExecutable.Locate();
        var psi = new ProcessStartInfo(file)
        {
            RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false,
        };
        foreach (var a in prefix.Concat(arguments)) psi.ArgumentList.Add(a);
        using var child = Process.Start(psi) ?? throw new InvalidOperationException($"memory probe: could not start {file}");
        var stderr = child.StandardError.ReadToEndAsync();
        var stdout = child.StandardOutput.ReadToEndAsync();
        var limit = timeout ?? TimeSpan.FromMinutes(30);
        if (!child.WaitForExit(limit))
        {
            child.Kill(entireProcessTree: true);
            throw new InvalidOperationException($"memory probe {config.Label}: timed out after {limit.TotalSeconds:F0} s");
        }
        var output = stdout.Result;
        if (child.ExitCode != 0)
            throw new InvalidOperationException($"memory probe {config.Label} failed (exit {child.ExitCode}): {Tail(stderr.Result + output)}");
        return output.Split('\n').Select(l => l.Trim()).LastOrDefault(l => l.StartsWith('{'))
            ?? throw new InvalidOperationException($"memory probe {config.Label}: no JSON line in its output: {Tail(output)}");
    }

    /// <summary>The command-line arguments after `deq` that probe <paramref name="config"/>.</summary>
    public static string[] ProbeArguments(MemoryProbeConfig config) => ArgumentsOf(config);

    static string[] ArgumentsOf(MemoryProbeConfig c) =>
    [
        "bench", "memory-probe", "--json",
        "--family", c.Family.ToString().ToLowerInvariant(), "--mode", c.Mode.ToString().ToLowerInvariant(),
        "--iterations", Str(c.Iterations), "--backward-iterations", Str(c.BackwardIterations),
        "--width", Str(c.Width), "--seq", Str(c.SeqLen), "--batch", Str(c.Batch),
        "--broyden-memory", Str(c.BroydenMemory), "--device", c.Device, "--seed", Str(c.Seed),
        "--solvers", c.Solvers.ToString().ToLowerInvariant(),
    ];

    /// <summary>
    /// Runs the probe in THIS process (what the child does): peaks are only meaningful when nothing ran
    /// before in the process, so call it from a fresh process (or from tests, for its bookkeeping).
    /// </summary>
    public static MemoryMeasurement ProbeInThisProcess(MemoryProbeConfig config)
    {
        config.Validate();
        if (config.Device != "cpu")
            throw new InvalidOperationException(
                "memory probe: on CUDA the peak would come from the caching allocator (torch.cuda.max_memory_allocated), " +
                "which TorchSharp 0.107 does not expose (it binds only is_available, device_count, synchronize and seeding); " +
                "measure GPU memory from PyTorch or nvidia-smi instead.");
        // One thread: the peak then holds no per-thread buffers that vary with the machine, and an oversubscribed
        // machine does not stall OpenMP barriers (memory, not speed, is measured here).
        torch.set_num_threads(1);
        WarmUpCode(config);
        using var core = BenchCore.Create(config.Family, config.Width, config.SeqLen, config.Batch, torch.CPU, config.Seed);
        core.Module.train();
        // Warm-up: loads kernels and parameter gradients at this size, so the measured step sees the steady state.
        Step(core, config with { Iterations = 1, BackwardIterations = 1 });
        ProcessMemory.Settle();
        bool reset = ProcessMemory.TryResetPeak(out _);
        var before = ProcessMemory.Now();
        var clock = Stopwatch.StartNew();
        var (forward, backward, residual) = Step(core, config);
        clock.Stop();
        var after = ProcessMemory.Now();
        if (before.RssBytes is not long baseline || after.PeakRssBytes is not long peak)
            throw new InvalidOperationException("memory probe: /proc/self/status is unreadable (the CPU method needs Linux).");
        if (!reset)
            throw new InvalidOperationException("memory probe: could not reset the peak via /proc/self/clear_refs (needs Linux 4.0+ and write access).");
        return new MemoryMeasurement(config, Math.Max(0, peak - baseline), baseline, peak, core.StateBytes, core.Parameters,
            clock.Elapsed.TotalSeconds, forward, backward, residual,
            $"{CpuMethod}; allocator: {Deq.Native.FreedMemory.Status}");
    }

    /// <summary>
    /// The probe's ledger in THIS process (what `memory-probe --ledger` does): warm-up step, then
    /// <see cref="MemoryLedger.Measure"/> of one step with the configured solvers (Adam's two slots per parameter).
    /// </summary>
    public static MemoryLedger LedgerInThisProcess(MemoryProbeConfig config)
    {
        config.Validate();
        if (config.Device != "cpu")
            throw new InvalidOperationException("memory ledger: CPU only; TorchSharp 0.107 exposes no CUDA allocator statistics.");
        torch.set_num_threads(1);
        WarmUpCode(config);
        using var core = BenchCore.Create(config.Family, config.Width, config.SeqLen, config.Batch, torch.CPU, config.Seed);
        core.Module.train();
        Step(core, config with { Iterations = 1, BackwardIterations = 1 });
        ProcessMemory.Settle();
        using var scope = torch.NewDisposeScope();
        var bound = core.Bind();
        return MemoryLedger.Measure(bound.F, bound.Z0, OptionsOf(config), Loss, core.Module, afterSolve: bound.ReleaseInjection);
    }

    /// <summary>The equilibrium options the probe uses for a DEQ step: the configured solver pair, every step taken.</summary>
    public static EquilibriumOptions DeqOptions(MemoryProbeConfig c)
    {
        // Tolerance far below float32 precision: the solvers take all their steps, so N is what is measured.
        const double unreachable = 1e-30;
        if (c.Solvers == ProbeSolvers.Lean)
            return new EquilibriumOptions(EquilibriumOptions.LeanForward(c.Iterations, unreachable),
                Adjoint.Implicit(EquilibriumOptions.LeanAdjointSolve(c.EffectiveBackwardIterations, unreachable)));
        var broyden = new BroydenOptions(Memory: c.BroydenMemory);
        return new EquilibriumOptions(
            Broyden.Create(new SolverOptions(MaxIter: c.Iterations, Tol: unreachable), broyden),
            Adjoint.Implicit(Broyden.Create(new SolverOptions(MaxIter: c.EffectiveBackwardIterations, Tol: unreachable), broyden)));
    }

    static EquilibriumOptions OptionsOf(MemoryProbeConfig c) =>
        c.Mode == ProbeMode.Deq ? DeqOptions(c) : new EquilibriumOptions(Adjoint: Adjoint.Unrolled(c.Iterations));

    // One training step: bind (injection), solve or unroll, a scalar loss on z*, backward.
    static (int Forward, int Backward, double Residual) Step(BenchCore core, MemoryProbeConfig c)
    {
        using var scope = torch.NewDisposeScope();
        BackwardReport? backward = null;
        var options = OptionsOf(c) with { OnBackward = r => backward = r };
        var bound = core.Bind();
        var eq = Equilibrium.Solve(bound.F, bound.Z0, options);
        bound.ReleaseInjection();
        Equilibrium.Backward(Loss(eq.Z));
        return (eq.Forward.Steps, backward?.Result.Steps ?? 0, eq.Forward.RelLowest);
    }

    /// <summary>
    /// The probe's stand-in loss, mean(z*^2), with its square freed at once: backward needs only z* for it, so
    /// the probe's own loss holds no copy of z through backward (a model's loss is its own business).
    /// </summary>
    public static Tensor Loss(Tensor zStar)
    {
        using var scope = torch.NewDisposeScope();
        return scope.MoveToOuter(zStar.square().mean());
    }

    // .NET compiles a hot method again, optimised, once it has run about 30 times (tiered compilation), on a
    // background thread: inside the measured step that compiler's memory would count as the step's, and more
    // of it the more steps N the step takes (measured: +2.6 MiB from N = 5 to N = 100 at h 256). So a small
    // core runs the same code paths (40 steps forward and back) for at least a second, and the compiler
    // finishes, before anything is measured. The code is what it is at any size. (While Broyden chose its products'
    // form by row length, rows of 512 here left the probe's form to compile inside the measured step, +0.6 MiB; the
    // small core's sequence 24, rows of 768 and 1 536 entries, dates from then.)
    static void WarmUpCode(MemoryProbeConfig c)
    {
        using var small = BenchCore.Create(c.Family, 32, 24, 2, torch.CPU, c.Seed);
        small.Module.train();
        var warm = c with { Width = 32, SeqLen = 24, Batch = 2, Iterations = 40, BackwardIterations = 40 };
        var clock = Stopwatch.StartNew();
        for (int i = 0; i < 3 || clock.Elapsed < TimeSpan.FromSeconds(1); i++) Step(small, warm);
        // The optimising compiles run on a background thread, slower on a loaded machine: wait until the count of
        // compiled methods has stood still for half a second (at most 20 s).
        long compiled = System.Runtime.JitInfo.GetCompiledMethodCount();
        for (int still = 0, waited = 0; still < 5 && waited < 200; waited++)
        {
            Thread.Sleep(100);
            long now = System.Runtime.JitInfo.GetCompiledMethodCount();
            still = now == compiled ? still + 1 : 0;
            compiled = now;
        }
    }

    static string Str(int v) => v.ToString(CultureInfo.InvariantCulture);

    static string Tail(string s) => s.Length <= 2000 ? s.Trim() : "..." + s[^2000..].Trim();
}
