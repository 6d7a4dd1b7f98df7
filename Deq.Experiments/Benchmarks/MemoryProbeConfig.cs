namespace Deq.Experiments.Benchmarks;

/// <summary>Which DEQ instantiation's equilibrium core a benchmark builds.</summary>
public enum CoreFamily
{
    /// <summary>DEQ-TrellisNet: injection convolution plus the weight-shared gated causal convolution.</summary>
    TrellisNet,
    /// <summary>DEQ-Transformer: injection plus one relative-attention layer with its feed-forward block.</summary>
    Transformer,
}

/// <summary>Which solver pair a DEQ probe uses.</summary>
public enum ProbeSolvers
{
    /// <summary>The training default: <see cref="Deq.Implicit.EquilibriumOptions.LeanForward"/> forward, the implicit adjoint by <see cref="Deq.Implicit.EquilibriumOptions.LeanAdjointSolve"/>.</summary>
    Lean,
    /// <summary>The paper's pair: Broyden forward and on the adjoint, rank <see cref="MemoryProbeConfig.BroydenMemory"/>.</summary>
    Broyden,
}

/// <summary>How the core is trained in the measured step.</summary>
public enum ProbeMode
{
    /// <summary>Equilibrium.Solve with the implicit adjoint: the DEQ.</summary>
    Deq,
    /// <summary>The weight-tied stack: f applied L times from zero, plain backprop (Adjoint.Unrolled(L)).</summary>
    Unrolled,
}

/// <summary>One memory-probe configuration: one training step (forward + backward) of an equilibrium core.</summary>
/// <param name="Family">The core: TrellisNet or Transformer.</param>
/// <param name="Mode">DEQ or the unrolled weight-tied stack.</param>
/// <param name="Iterations">DEQ: forward solver steps, all taken (the tolerance is set unreachable); Unrolled: the depth L.</param>
/// <param name="Width">TrellisNet: channels of h (NHid + NOut; NInp = NOut = 2/7 of it, the PTB model's 400/1400).
/// Transformer: d_model (heads of 64 where it divides, d_inner 4 d_model).</param>
/// <param name="SeqLen">Sequence length (the paper's memory benchmark: 150).</param>
/// <param name="Batch">Batch size (the paper's memory benchmark: 15).</param>
/// <param name="BackwardIterations">DEQ: adjoint solver steps; 0 means the same as <paramref name="Iterations"/>.</param>
/// <param name="BroydenMemory">With <see cref="ProbeSolvers.Broyden"/>: rank of Broyden's inverse-Jacobian estimate (default 30).</param>
/// <param name="Device">"cpu" (peak RSS) or "cuda" (not measurable with TorchSharp 0.107: the probe says so).</param>
/// <param name="Seed">Seed of the parameters and the input.</param>
/// <param name="Solvers">DEQ: the memory-lean training default or the paper's Broyden pair.</param>
public sealed record MemoryProbeConfig(
    CoreFamily Family = CoreFamily.TrellisNet,
    ProbeMode Mode = ProbeMode.Deq,
    int Iterations = 30,
    int Width = 256,
    int SeqLen = 150,
    int Batch = 15,
    int BackwardIterations = 0,
    int BroydenMemory = 30,
    string Device = "cpu",
    int Seed = 0,
    ProbeSolvers Solvers = ProbeSolvers.Lean)
{
    /// <summary>Adjoint steps actually used.</summary>
    public int EffectiveBackwardIterations => BackwardIterations > 0 ? BackwardIterations : Iterations;

    /// <summary>A short label, e.g. "trellisnet deq N=30 w256" or "trellisnet unrolled L=16 w256".</summary>
    public string Label => Mode == ProbeMode.Deq
        ? $"{Family.ToString().ToLowerInvariant()} deq N={Iterations}/{EffectiveBackwardIterations} {(Solvers == ProbeSolvers.Lean ? "lean" : $"broyden m={BroydenMemory}")} w{Width}"
        : $"{Family.ToString().ToLowerInvariant()} unrolled L={Iterations} w{Width}";

    /// <summary>Throws an <see cref="ArgumentException"/> naming the first bad setting.</summary>
    public MemoryProbeConfig Validate()
    {
        void Positive(int v, string name) { if (v < 1) throw new ArgumentOutOfRangeException(name, v, $"MemoryProbeConfig.{name} must be positive."); }
        Positive(Iterations, nameof(Iterations)); Positive(Width, nameof(Width)); Positive(SeqLen, nameof(SeqLen));
        Positive(Batch, nameof(Batch)); Positive(BroydenMemory, nameof(BroydenMemory));
        if (BackwardIterations < 0) throw new ArgumentOutOfRangeException(nameof(BackwardIterations), BackwardIterations, "MemoryProbeConfig.BackwardIterations must be non-negative (0: same as Iterations).");
        if (Family == CoreFamily.TrellisNet && Width < 4) throw new ArgumentOutOfRangeException(nameof(Width), Width, "MemoryProbeConfig.Width must be at least 4 for TrellisNet.");
        if (Family == CoreFamily.Transformer && Width % 2 != 0) throw new ArgumentException($"MemoryProbeConfig.Width must be even for the Transformer (sinusoidal positions); got {Width}.", nameof(Width));
        if (Device != "cpu" && !Device.StartsWith("cuda", StringComparison.Ordinal))
            throw new ArgumentException($"MemoryProbeConfig.Device must be 'cpu' or 'cuda[:n]'; got '{Device}'.", nameof(Device));
        return this;
    }
}
