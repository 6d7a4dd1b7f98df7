using Deq.Implicit;
using Deq.Layers;
using TorchSharp;
using static TorchSharp.torch;

namespace Deq.Models;

/// <summary>
/// The DEQ-TrellisNet language model: embedding (with word-level and locked dropout), the equilibrium
/// of the weight-shared TrellisNet layer, and a softmax tied to the embedding.
/// </summary>
public sealed class DeqTrellisNetLM : nn.Module
{
    /// <summary>Token embedding (adaptive when cutoffs are given).</summary>
    public readonly AdaptiveEmbedding encoder;
    /// <summary>Injection and f.</summary>
    public readonly DeqTrellisNetCore trellisnet;
    /// <summary>Output softmax.</summary>
    public readonly AdaptiveLogSoftmax decoder;

    /// <summary>The hyperparameters.</summary>
    public DeqTrellisNetConfig Config { get; }

    /// <summary>Builds the model (CPU, float32; move it with .to(device, dtype)).</summary>
    public DeqTrellisNetLM(DeqTrellisNetConfig config) : base(nameof(DeqTrellisNetLM))
    {
        Config = config.Validate();
        var c = Config;
        var clusters = new AdaptiveClusters(c.NToken, c.NInp, c.NOut, c.Cutoffs, c.DivVal);
        encoder = new AdaptiveEmbedding(clusters, scale: false, c.EmbedInitStd, c.InitStd);
        trellisnet = new DeqTrellisNetCore(c);
        decoder = new AdaptiveLogSoftmax(clusters, c.TieWeights, tieProjections: true, c.EmbedInitStd, c.InitStd);
        RegisterComponents();
    }

    /// <summary>Embeds tokens [B, T] with embedding dropout (whole word types) and locked input dropout.</summary>
    public Tensor Embed(Tensor tokens)
    {
        if (tokens.dim() != 2) throw new ArgumentException($"DEQ-TrellisNet expects tokens [B, T]; got [{string.Join(", ", tokens.shape)}].", nameof(tokens));
        var e = encoder.Forward(tokens);
        var wordMask = VariationalDropout.Mask([Config.NToken], Config.EmbDropout, training, e);
        if (wordMask is not null) e = e * wordMask.index_select(0, tokens.reshape(-1)).reshape(tokens.shape[0], tokens.shape[1], 1);
        return VariationalDropout.Locked(e, Config.DropoutI, training);
    }

    /// <summary>Binds f to tokens [B, T] and the carried state (null at the start).</summary>
    public TrellisNetCell Bind(Tensor tokens, TrellisMemory? memory) => trellisnet.Bind(Embed(tokens), memory);

    /// <summary>One segment: solves (or unrolls) the equilibrium, returns the output features [B, T, NOut], the carried state and the stats.</summary>
    public LmOutput<TrellisMemory> Forward(Tensor tokens, TrellisMemory? memory, EquilibriumOptions options)
    {
        var cell = Bind(tokens, memory);
        var eq = Equilibrium.Solve(cell.F, cell.Z0, options);
        cell.Release();   // f's graph at z* exists: backward runs without the injection
        var hidden = VariationalDropout.Locked(trellisnet.Output(eq.Z), Config.Dropout, training);
        return new LmOutput<TrellisMemory>(hidden, cell.NextMemory(eq.Z), eq);
    }

    /// <summary>One segment with the schedule's options at a training step.</summary>
    public LmOutput<TrellisMemory> Forward(Tensor tokens, TrellisMemory? memory, int step) =>
        Forward(tokens, memory, Config.EffectiveSchedule.OptionsAt(step));

    /// <summary>Log-probabilities [B, T, V] (memory O(B T V): small vocabularies only).</summary>
    public Tensor LogProbs(Tensor hidden) =>
        decoder.LogProbs(hidden.reshape(-1, Config.NOut), encoder.Weights()).reshape(hidden.shape[0], hidden.shape[1], Config.NToken);

    /// <summary>Mean negative log-likelihood of targets [B, T] under features [B, T, NOut].</summary>
    public Tensor Loss(Tensor hidden, Tensor targets) => Nll(hidden, targets).mean();

    /// <summary>Per-token negative log-likelihood [B T] of targets [B, T] under features [B, T, NOut] (each tail cluster scored on its own targets only).</summary>
    public Tensor Nll(Tensor hidden, Tensor targets) =>
        decoder.Nll(hidden.reshape(-1, Config.NOut), targets.reshape(-1), encoder.Weights());
}
