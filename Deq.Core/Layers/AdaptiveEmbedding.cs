using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Deq.Layers;

/// <summary>The per-cluster tables and projections an adaptive embedding shares with a tied adaptive softmax.</summary>
/// <param name="Tables">Embedding table of each cluster, [n_i, d_i].</param>
/// <param name="Projections">Projection of each cluster, [d_proj, d_i], or null where the cluster has none.</param>
public sealed record AdaptiveWeights(IReadOnlyList<Tensor> Tables, IReadOnlyList<Tensor?> Projections);

/// <summary>
/// Adaptive input embedding: a token of cluster i is looked up in a [n_i, d_i] table and projected
/// to d_proj; with no cutoffs this is a plain embedding. Output is optionally scaled by sqrt(d_proj)
/// (Transformer-XL's emb_scale, which the DEQ-Transformer uses; the DEQ-TrellisNet's plain embedding does not scale).
/// </summary>
public sealed class AdaptiveEmbedding : nn.Module
{
    /// <summary>Cluster tables.</summary>
    public readonly ParameterList emb_layers;
    /// <summary>Projections of the clusters that have one, in cluster order.</summary>
    public readonly ParameterList emb_projs;

    /// <summary>The vocabulary split.</summary>
    public AdaptiveClusters Clusters { get; }
    /// <summary>Whether the output is multiplied by sqrt(d_proj).</summary>
    public bool Scale { get; }

    /// <summary>Tables from N(0, initStd), projections from N(0, projInitStd) (the reference's emb_init/proj_init_std).</summary>
    public AdaptiveEmbedding(AdaptiveClusters clusters, bool scale = true, double initStd = 0.01, double projInitStd = 0.01)
        : base(nameof(AdaptiveEmbedding))
    {
        Clusters = clusters;
        Scale = scale;
        emb_layers = new ParameterList(Enumerable.Range(0, clusters.Count)
            .Select(i => new Parameter(torch.randn(clusters.Size(i), clusters.Widths[i]) * initStd)).ToArray());
        emb_projs = new ParameterList(Enumerable.Range(0, clusters.Count).Where(i => clusters.HasProjection[i])
            .Select(i => new Parameter(torch.randn(clusters.DProj, clusters.Widths[i]) * projInitStd)).ToArray());
        RegisterComponents();
    }

    /// <summary>The tables and projections, for tying an adaptive softmax to this embedding.</summary>
    public AdaptiveWeights Weights()
    {
        var projections = new Tensor?[Clusters.Count];
        for (int i = 0, p = 0; i < Clusters.Count; i++)
            projections[i] = Clusters.HasProjection[i] ? emb_projs[p++] : null;
        return new AdaptiveWeights(emb_layers.Cast<Tensor>().ToArray(), projections);
    }

    /// <summary>Embeds token ids of any shape into [..., d_proj].</summary>
    public Tensor Forward(Tensor tokens)
    {
        if (tokens.dtype != ScalarType.Int64)
            throw new ArgumentException($"AdaptiveEmbedding expects int64 token ids; got {tokens.dtype}.", nameof(tokens));
        using var scope = torch.NewDisposeScope();
        var flat = tokens.reshape(-1);
        if (flat.numel() > 0)
        {
            var (lo, hi) = (flat.min().item<long>(), flat.max().item<long>());
            if (lo < 0 || hi >= Clusters.NToken)
                throw new ArgumentOutOfRangeException(nameof(tokens), $"Token ids must lie in [0, {Clusters.NToken}); got range [{lo}, {hi}].");
        }
        var w = Weights();
        var dtype = w.Tables[0].dtype;
        Tensor output;
        if (Clusters.Count == 1)
        {
            output = w.Tables[0].index_select(0, flat);
            if (w.Projections[0] is { } p) output = nn.functional.linear(output, p);
        }
        else
        {
            output = torch.zeros(flat.shape[0], Clusters.DProj, dtype: dtype, device: flat.device);
            for (int i = 0; i < Clusters.Count; i++)
            {
                var idx = ((flat >= Clusters.Starts[i]) & (flat < Clusters.Ends[i])).nonzero().squeeze(1);
                if (idx.numel() == 0) continue;
                var e = w.Tables[i].index_select(0, flat.index_select(0, idx) - Clusters.Starts[i]);
                if (w.Projections[i] is { } p) e = nn.functional.linear(e, p);
                output = output.index_copy(0, idx, e);
            }
        }
        if (Scale) output = output * Math.Sqrt(Clusters.DProj);
        return output.reshape([.. tokens.shape, Clusters.DProj]).MoveToOuterDisposeScope();
    }
}
