using System.Globalization;
using Deq.Layers;
using Deq.Models;
using Deq.Training;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Deq.Experiments.Baselines;

/// <summary>One segment of an untied stack.</summary>
/// <param name="Hidden">Features [B, T, d].</param>
/// <param name="Memory">The next segment's memory [B, MemLen, Layers d] (detached), or null when MemLen is 0.</param>
public sealed record UntiedOutput(Tensor Hidden, Tensor? Memory);

/// <summary>
/// Table 3's untied baseline: a Transformer-XL-style stack of <see cref="Layers"/> layers, each with its own weights
/// (relative multi-head attention over [memory; h] with the u/v biases and a causal mask, then the feed-forward block,
/// post-layer-norm as the DEQ's f), h_0 the embedded tokens, memory per layer (the previous segment's inputs to it),
/// and the adaptive embedding and softmax of a DEQ-Transformer config, tied. Layers take no input injection: this is
/// the ordinary deep network, not an unrolled DEQ.
/// </summary>
public sealed class UntiedTransformerLM : nn.Module
{
    /// <summary>Token embedding.</summary>
    public readonly AdaptiveEmbedding word_emb;
    /// <summary>The layers (named "core" so that parameter counts treat them as the non-embedding model).</summary>
    public readonly ModuleList<DeqTransformerLayer> core;
    /// <summary>Output softmax.</summary>
    public readonly AdaptiveLogSoftmax crit;

    /// <summary>Width, heads, feed-forward width, dropouts, memory length, cutoffs and initialisation (its Schedule is unused).</summary>
    public DeqTransformerConfig Config { get; }
    /// <summary>Number of layers.</summary>
    public int Layers { get; }

    /// <summary>Builds the stack; every layer from N(0, InitStd).</summary>
    public UntiedTransformerLM(DeqTransformerConfig config, int layers) : base(nameof(UntiedTransformerLM))
    {
        if (layers < 1) throw new ArgumentOutOfRangeException(nameof(layers), layers, "UntiedTransformerLM needs at least one layer.");
        Config = config.Validate();
        Layers = layers;
        var c = Config;
        var clusters = new AdaptiveClusters(c.NToken, c.EmbedWidth, c.DModel, c.Cutoffs, c.DivVal);
        word_emb = new AdaptiveEmbedding(clusters, scale: true, c.EmbedInitStd, c.ProjInitStd);
        core = nn.ModuleList(Enumerable.Range(0, layers)
            .Select(_ => new DeqTransformerLayer(c.DModel, c.NHead, c.DHead, c.DInner, c.PreLayerNorm, c.WeightNorm, c.InitStd)).ToArray());
        crit = new AdaptiveLogSoftmax(clusters, c.TieWeights, c.TieProjections, c.EmbedInitStd, c.ProjInitStd);
        RegisterComponents();
    }

    /// <summary>
    /// One segment: tokens [B, T] and the memory [B, M, Layers d] (none at the start) -> features [B, T, d] and the next
    /// memory (the last MemLen inputs of every layer, detached; null when MemLen is 0).
    /// </summary>
    public UntiedOutput Forward(Tensor tokens, Tensor? memory = null)
    {
        var c = Config;
        if (tokens.dim() != 2) throw new ArgumentException($"UntiedTransformerLM expects tokens [B, T]; got [{string.Join(", ", tokens.shape)}].", nameof(tokens));
        long b = tokens.shape[0], t = tokens.shape[1], d = c.DModel;
        if (memory is not null && (memory.dim() != 3 || memory.shape[0] != b || memory.shape[2] != Layers * d))
            throw new ArgumentException($"UntiedTransformerLM memory must be [{b}, M, {Layers * d}]; got [{string.Join(", ", memory.shape)}].", nameof(memory));
        long m = memory?.shape[1] ?? 0, k = m + t;
        bool tr = training;
        var h = VariationalDropout.Locked(word_emb.Forward(tokens), c.Dropout, tr);
        var positions = SinusoidalPositions.Relative(k, d, h.dtype, h.device);
        positions = VariationalDropout.Apply(positions, VariationalDropout.Mask([1, d], c.Dropout, tr, h));
        var noInjection = torch.zeros(b, k, 3L * c.NHead * c.DHead, dtype: h.dtype, device: h.device);
        var next = new List<Tensor>();
        for (int l = 0; l < Layers; l++)
        {
            var mem = memory is null ? torch.zeros(b, 0, d, dtype: h.dtype, device: h.device) : memory.narrow(2, l * d, d).to(h.dtype);
            long keep = Math.Min(c.MemLen, k);
            using (torch.no_grad()) next.Add((m == 0 ? h : torch.cat([mem, h], 1)).detach().narrow(1, k - keep, keep));
            var masks = new TransformerMasks(
                VariationalDropout.Mask([b, 1, d], c.Dropout, tr, h),
                VariationalDropout.Mask([b, c.NHead, t, k], c.DropAtt, tr, h),
                VariationalDropout.Mask([b, 1, c.DInner], c.Dropout, tr, h),
                VariationalDropout.Mask([b, 1, d], c.Dropout, tr, h));
            h = core[l].Forward(h, mem, noInjection, positions, masks);
        }
        var nextMemory = c.MemLen > 0 ? torch.cat(next.ToArray(), 2).contiguous() : null;
        return new UntiedOutput(VariationalDropout.Locked(h, c.Dropout, tr), nextMemory);
    }

    /// <summary>Log-probabilities [B, T, V].</summary>
    public Tensor LogProbs(Tensor hidden) =>
        crit.LogProbs(hidden.reshape(-1, Config.DModel), word_emb.Weights()).reshape(hidden.shape[0], hidden.shape[1], Config.NToken);

    /// <summary>Per-token negative log-likelihood [B T] of targets [B, T] (each tail cluster scored on its own targets only).</summary>
    public Tensor Nll(Tensor hidden, Tensor targets) =>
        crit.Nll(hidden.reshape(-1, Config.DModel), targets.reshape(-1), word_emb.Weights());

    /// <summary>Parameters of the layers (the non-embedding model).</summary>
    public long CoreParameters => core.parameters().Sum(p => p.numel());

    /// <summary>Parameters of one layer of width d, heads h x dh, feed-forward width f (no module is built for the count's own arithmetic).</summary>
    public static long LayerParameters(DeqTransformerConfig c)
    {
        long d = c.DModel, w = (long)c.NHead * c.DHead, f = c.DInner;
        long norms = c.WeightNorm ? 3 * w + w + d + f + d : 0;          // one scale per output row of qkv, r, o, ff1, ff2
        return d * 3 * w + d * w + (w * d + d) + 2 * w + (d * f + f) + (f * d + d) + norms;
    }

    /// <summary>Parameters of a DEQ-Transformer's core: its injection (d -> 3 h dh, with bias) and its one layer.</summary>
    public static long DeqCoreParameters(DeqTransformerConfig c) => c.DModel * 3L * c.NHead * c.DHead + 3L * c.NHead * c.DHead + LayerParameters(c);

    /// <summary>
    /// The layer shape for <paramref name="layers"/> untied layers whose parameters together come closest to
    /// <paramref name="target"/>, keeping d_model (the embedding is shared): halves the heads while one layer with a
    /// feed-forward block of d_model / 2 exceeds its share (so the feed-forward block keeps a useful width), then picks
    /// d_inner (a multiple of 8, at least 8).
    /// </summary>
    public static DeqTransformerConfig MatchParameters(DeqTransformerConfig c, int layers, long target)
    {
        if (layers < 1) throw new ArgumentOutOfRangeException(nameof(layers), layers, "MatchParameters needs at least one layer.");
        long share = target / layers;
        var shape = c with { DInner = Math.Max(8, c.DModel / 2) };
        while (shape.NHead > 1 && LayerParameters(shape) > share) shape = shape with { NHead = shape.NHead / 2 };
        shape = shape with { DInner = 8 };
        long perUnit = 2L * c.DModel + 1 + (c.WeightNorm ? 1 : 0);
        long units = (share - LayerParameters(shape)) / perUnit + 8;
        int dInner = (int)Math.Max(8, Math.Round(units / 8.0) * 8);
        return shape with { DInner = dInner };
    }

    /// <summary>The untied stack for the trainer (memory [B, M, Layers d]); logits are log-probabilities (the targets' NLL alone with an adaptive softmax), as DeqLanguageModels'.</summary>
    public static LanguageModel Create(string name, LanguageModelSpec spec, DeqTransformerConfig config, int layers)
    {
        var c = config with { NToken = spec.VocabSize };
        torch.manual_seed(spec.Seed);
        var m = new UntiedTransformerLM(c, layers);
        m.to(spec.DType).to(spec.Device);
        LanguageModelOutput Forward(Tensor input, Tensor? memory, StepContext? _)
        {
            var output = m.Forward(input.t(), memory);
            return DeqLanguageModels.Output(m.crit, output.Hidden, m.LogProbs, m.Nll, output.Memory);
        }
        return new LanguageModel(m, Forward, new Dictionary<string, string>
        {
            ["model.name"] = name,
            ["model.config"] = c.ToString(),
            ["model.layers"] = layers.ToString(CultureInfo.InvariantCulture),
            ["model.vocab"] = spec.VocabSize.ToString(CultureInfo.InvariantCulture),
            ["model.init_seed"] = spec.Seed.ToString(CultureInfo.InvariantCulture),
        });
    }
}
