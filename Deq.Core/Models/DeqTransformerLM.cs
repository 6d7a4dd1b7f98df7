using Deq.Implicit;
using Deq.Layers;
using TorchSharp;
using static TorchSharp.torch;

namespace Deq.Models;

/// <summary>
/// The DEQ-Transformer language model: adaptive (or plain) embedding, the equilibrium
/// z* = f(z*; x, memory) of one Transformer-XL layer, and an adaptive (or plain) softmax tied to the embedding.
/// </summary>
public sealed class DeqTransformerLM : nn.Module
{
    /// <summary>Token embedding (adaptive input when cutoffs are given).</summary>
    public readonly AdaptiveEmbedding word_emb;
    /// <summary>Injection and f.</summary>
    public readonly DeqTransformerCore core;
    /// <summary>Output softmax.</summary>
    public readonly AdaptiveLogSoftmax crit;

    /// <summary>The hyperparameters.</summary>
    public DeqTransformerConfig Config { get; }

    /// <summary>Builds the model (on the CPU, float32; use .to(device, dtype) to move it).</summary>
    public DeqTransformerLM(DeqTransformerConfig config) : base(nameof(DeqTransformerLM))
    {
        Config = config.Validate();
        var c = Config;
        var clusters = new AdaptiveClusters(c.NToken, c.EmbedWidth, c.DModel, c.Cutoffs, c.DivVal);
        word_emb = new AdaptiveEmbedding(clusters, scale: true, c.EmbedInitStd, c.ProjInitStd);
        core = new DeqTransformerCore(c);
        crit = new AdaptiveLogSoftmax(clusters, c.TieWeights, c.TieProjections, c.EmbedInitStd, c.ProjInitStd);
        RegisterComponents();
    }

    /// <summary>
    /// Binds f to a segment of tokens [B, T] (int64) and the previous memory (null at the start).
    /// The result's F is the function the solver iterates; dropout masks are fixed inside it.
    /// </summary>
    public TransformerCell Bind(Tensor tokens, TransformerMemory? memory)
    {
        if (tokens.dim() != 2) throw new ArgumentException($"DEQ-Transformer expects tokens [B, T]; got [{string.Join(", ", tokens.shape)}].", nameof(tokens));
        var embedded = VariationalDropout.Locked(word_emb.Forward(tokens), Config.Dropout, training);
        return core.Bind(embedded, memory);
    }

    /// <summary>
    /// Runs one segment: binds f, solves (or unrolls) the equilibrium with <paramref name="options"/>,
    /// and returns the output features, the next memory and the solver statistics.
    /// </summary>
    public LmOutput<TransformerMemory> Forward(Tensor tokens, TransformerMemory? memory, EquilibriumOptions options)
    {
        var cell = Bind(tokens, memory);
        var eq = Equilibrium.Solve(cell.F, cell.Z0, options);
        var next = cell.NextMemory(eq.Z, Config.MemLen);
        cell.Release();   // f's graph at z* exists: backward runs without the injections
        var hidden = VariationalDropout.Locked(eq.Z, Config.Dropout, training);
        return new LmOutput<TransformerMemory>(hidden, next, eq);
    }

    /// <summary>One segment with the schedule's options at a training step (unrolled while pretraining, then implicit).</summary>
    public LmOutput<TransformerMemory> Forward(Tensor tokens, TransformerMemory? memory, int step) =>
        Forward(tokens, memory, Config.EffectiveSchedule.OptionsAt(step));

    /// <summary>Mean negative log-likelihood of targets [B, T] under features [B, T, d_model].</summary>
    public Tensor Loss(Tensor hidden, Tensor targets) => Nll(hidden, targets).mean();

    /// <summary>Per-token negative log-likelihood [B T] of targets [B, T] under features [B, T, d_model] (each tail cluster scored on its own targets only).</summary>
    public Tensor Nll(Tensor hidden, Tensor targets) =>
        crit.Nll(hidden.reshape(-1, Config.DModel), targets.reshape(-1), word_emb.Weights());

    /// <summary>Log-probabilities [B, T, V] (memory O(B T V): small vocabularies only).</summary>
    public Tensor LogProbs(Tensor hidden) =>
        crit.LogProbs(hidden.reshape(-1, Config.DModel), word_emb.Weights()).reshape(hidden.shape[0], hidden.shape[1], Config.NToken);
}
