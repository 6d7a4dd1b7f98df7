using TorchSharp;
using static TorchSharp.torch;

namespace Deq.Solvers;

/// <summary>
/// What a step function sees of the solve: f (checked and counted), the sizes, the options, the
/// step count, per-element norms, and a place for state that outlives a step.
/// Every tensor in the protocol is flat, [batch, width].
/// </summary>
public sealed class SolveContext : IDisposable
{
    readonly Func<Tensor, Tensor> _f;
    readonly List<Tensor> _kept = [];
    readonly ScalarType _dtype;
    readonly Device _device;
    RecycledBlocks? _blocks;
    bool _blocksChecked;

    internal SolveContext(string name, Func<Tensor, Tensor> f, Tensor z0, SolverOptions options)
    {
        Name = name;
        _f = f;
        Options = options;
        if (z0.dim() < 1 || z0.shape[0] < 1)
            throw new ArgumentException($"{name}: z0 must be batch-first with at least one element; got shape [{string.Join(", ", z0.shape)}].", nameof(z0));
        if (!z0.is_floating_point())
            throw new ArgumentException($"{name}: z0 must be a floating-point tensor; got {z0.dtype}.", nameof(z0));
        if (!FiniteEntries(z0))
            throw new ArgumentException($"{name}: z0 contains NaN or Inf.", nameof(z0));
        Shape = z0.shape;
        _dtype = z0.dtype;
        _device = z0.device;
        Batch = Shape[0];
        Width = z0.numel() / Batch;
        IsFlat = Shape.Length == 2;
    }

    /// <summary>The solver's name.</summary>
    public string Name { get; }
    /// <summary>The solve's options.</summary>
    public SolverOptions Options { get; }
    /// <summary>Batch elements.</summary>
    public long Batch { get; }
    /// <summary>Entries per batch element.</summary>
    public long Width { get; }
    /// <summary>The shape of z0 (f sees this shape; the protocol's tensors are [Batch, Width]).</summary>
    public long[] Shape { get; }
    /// <summary>Steps recorded so far (the first, at z0, is step 1).</summary>
    public int Step { get; internal set; }
    /// <summary>Calls of f so far.</summary>
    public int Evaluations { get; private set; }

    internal bool IsFlat { get; }
    internal SolverStatus? Stopped { get; private set; }
    internal string StopReason { get; private set; } = "";

    /// <summary>f(z) for a flat z [Batch, Width], checked (same shape, dtype and device) and counted; flat too.</summary>
    public Tensor Evaluate(Tensor z)
    {
        var budget = EvaluationBudget.Current;
        if (budget is not null && !budget.TryCharge()) throw new EvaluationBudgetExhausted(budget.Limit);
        Evaluations++;
        Tensor fz;
        bool ownOutput;
        // f's intermediate tensors go as soon as it returns (with grad off nothing else needs them), so a
        // step holds f's output, not its every temporary, until the step's scope ends.
        using (var inner = torch.NewDisposeScope())
        {
            fz = _f(IsFlat ? z : z.reshape(Shape));
            ownOutput = inner.Contains(fz);
            if (ownOutput) inner.MoveToOuter(fz);
        }
        if (!HasShape(fz))
            throw new InvalidOperationException($"{Name}: f changed the shape: z has [{string.Join(", ", Shape)}], f(z) has [{string.Join(", ", fz.shape)}]. A fixed-point map must return its input's shape.");
        if (fz.dtype != _dtype)
            throw new InvalidOperationException($"{Name}: f changed the dtype from {_dtype} to {fz.dtype}. Give z0 the dtype f computes in.");
        var device = fz.device;
        if (device.type != _device.type || device.index != _device.index)
            throw new InvalidOperationException($"{Name}: f returned a tensor on {device}, but z0 is on {_device}. Move z0 or f's parameters to one device.");
        if (IsFlat) return fz;
        // A strided f(z) (a transposed layout) is copied by the reshape: free the original at once, or the step
        // would hold f(z) twice. (Only an output f made itself: one it returned from elsewhere is not ours.)
        var flat = fz.reshape(Batch, Width);
        if (ownOutput) fz.Dispose();
        return flat;
    }

    // A broadcast dimension (stride 0) repeats its values, so one index of it stands for all: InitialGuess.Zeros is one
    // value read once, where libtorch's isfinite over the broadcast took 0.4 ms at h 512, a fifth of a solve's bookkeeping.
    static bool FiniteEntries(Tensor z0)
    {
        using var scope = torch.NewDisposeScope();
        var t = z0;
        for (int d = 0; d < t.dim(); d++)
            if (t.stride(d) == 0 && t.size(d) > 1) t = t.narrow(d, 0, 1);
        return HostReductions.AllFinite(t) ?? torch.isfinite(t).all().item<bool>();
    }

    // Tensor.shape marshals a new array (0.8 us, a tenth of the toy's whole step bookkeeping); size(i) does not.
    bool HasShape(Tensor t)
    {
        if (t.dim() != Shape.Length) return false;
        for (int i = 0; i < Shape.Length; i++)
            if (t.size(i) != Shape[i]) return false;
        return true;
    }

    /// <summary>
    /// <see cref="Evaluate(Tensor)"/> after freeing <paramref name="done"/>, the step's current iterate, except
    /// <paramref name="z"/> itself: for a step that no longer needs it (its history holds copies), so that f runs
    /// with two fewer copies of z alive (and no idle <see cref="NewIterate"/> memory either). The driver skips what is
    /// already freed.
    /// </summary>
    public Tensor Evaluate(Tensor z, Iterate done)
    {
        foreach (var t in new[] { done.Z, done.Fz })
            if (!ReferenceEquals(t, z) && !t.IsInvalid) t.Dispose();
        ReleaseStart();
        _blocks?.Trim();
        return Evaluate(z);
    }

    /// <summary>z0, when the caller handed it over (a fallback's start): freed once the first iterate is done with.</summary>
    internal Tensor? OwnedStart { get; set; }

    internal void ReleaseStart()
    {
        OwnedStart?.Dispose();
        OwnedStart = null;
    }

    /// <summary>Takes <paramref name="t"/> out of the step's scope as solver state; the driver frees it when the solve ends.</summary>
    public Tensor Keep(Tensor t)
    {
        t.DetachFromDisposeScope();
        _kept.Add(t);
        return t;
    }

    /// <summary>
    /// An uninitialised [Batch, Width] tensor of z0's dtype and device, for a step's next iterate. Where a fresh one
    /// would be new pages (CPU at or above <see cref="Native.FreedMemory"/>'s threshold), its memory is a block that this
    /// solve recycles once libtorch has freed every tensor on it, so whoever holds an iterate keeps its values. At most
    /// one block waits idle, and taking it leaves none while f runs.
    /// </summary>
    public Tensor NewIterate()
    {
        if (!_blocksChecked) (_blocks, _blocksChecked) = (RecycledBlocks.For(_dtype, _device, Batch, Width), true);
        return _blocks?.Take() ?? torch.empty(Batch, Width, dtype: _dtype, device: _device);
    }

    /// <summary>The norm of each row of a flat [Batch, Width] tensor, in the options' norm: [Batch].</summary>
    public Tensor Norm(Tensor flat) => Norms.PerRow(flat, Options.Norm);

    /// <summary>Ends the solve for a reason the solver detected itself (the first reason given wins).</summary>
    public void Stop(SolverStatus status, string reason)
    {
        Stopped ??= status;
        if (StopReason.Length == 0) StopReason = reason;
    }

    /// <summary>Frees the kept state.</summary>
    public void Dispose()
    {
        foreach (var t in _kept) t.Dispose();
        _kept.Clear();
        _blocks?.Dispose();
    }
}

/// <summary>Per-row vector norms.</summary>
internal static class Norms
{
    public static Tensor PerRow(Tensor flat, ResidualNorm norm) =>
        norm == ResidualNorm.L2 ? flat.norm(1) : flat.abs().amax(1);
}
