using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Deq.Layers;

/// <summary>
/// Adaptive softmax (Grave et al. 2017) with Transformer-XL's projections: the head scores the head
/// cluster's tokens plus one logit per tail cluster; a tail token's log-probability is its cluster's
/// head log-probability plus its log-probability within the cluster. With no cutoffs it is a plain softmax.
/// Output tables are tied to an <see cref="AdaptiveEmbedding"/> when <c>tieWeights</c>; tail projections
/// are tied when <c>tieProjections</c> (the head's projection never is, as in the reference's tie_projs [False, True, ...]).
/// Tied tensors are passed in at call time, so the softmax never owns a second copy that .to(device) could split.
/// </summary>
public sealed class AdaptiveLogSoftmax : nn.Module
{
    /// <summary>Bias of each cluster's output layer.</summary>
    public readonly ParameterList out_biases;
    /// <summary>Own output tables (untied only).</summary>
    public readonly ParameterList out_layers;
    /// <summary>Own projections of the clusters whose projection is not tied.</summary>
    public readonly ParameterList out_projs;
    /// <summary>Head logits of the tail clusters, [clusters-1, d_0]; null without cutoffs.</summary>
    public readonly Parameter? cluster_weight;
    /// <summary>Their biases; null without cutoffs.</summary>
    public readonly Parameter? cluster_bias;

    readonly int[] _ownProj;   // index into out_projs, or -1 for tied / none

    /// <summary>The vocabulary split.</summary>
    public AdaptiveClusters Clusters { get; }
    /// <summary>Whether output tables come from the embedding.</summary>
    public bool TieWeights { get; }
    /// <summary>Whether tail projections come from the embedding.</summary>
    public bool TieProjections { get; }

    /// <summary>Own weights from N(0, initStd), projections from N(0, projInitStd), biases zero.</summary>
    public AdaptiveLogSoftmax(AdaptiveClusters clusters, bool tieWeights = true, bool tieProjections = true, double initStd = 0.01, double projInitStd = 0.01)
        : base(nameof(AdaptiveLogSoftmax))
    {
        (Clusters, TieWeights, TieProjections) = (clusters, tieWeights, tieProjections);
        int n = clusters.Count;
        out_biases = new ParameterList(Enumerable.Range(0, n).Select(i => new Parameter(torch.zeros(clusters.Size(i)))).ToArray());
        out_layers = new ParameterList(tieWeights ? [] :
            Enumerable.Range(0, n).Select(i => new Parameter(torch.randn(clusters.Size(i), clusters.Widths[i]) * initStd)).ToArray());
        _ownProj = new int[n];
        var projs = new List<Parameter>();
        for (int i = 0; i < n; i++)
        {
            bool own = clusters.HasProjection[i] && !(tieProjections && i > 0);
            _ownProj[i] = own ? projs.Count : -1;
            if (own) projs.Add(new Parameter(torch.randn(clusters.DProj, clusters.Widths[i]) * projInitStd));
        }
        out_projs = new ParameterList(projs.ToArray());
        if (n > 1)
        {
            cluster_weight = new Parameter(torch.randn(n - 1, clusters.Widths[0]) * initStd);
            cluster_bias = new Parameter(torch.zeros(n - 1));
        }
        RegisterComponents();
    }

    (Tensor W, Tensor? P) Cluster(int i, AdaptiveWeights? tied)
    {
        if ((TieWeights || TieProjections) && tied is null)
            throw new ArgumentNullException(nameof(tied), "This adaptive softmax is tied to an embedding: pass its Weights().");
        var w = TieWeights ? tied!.Tables[i] : out_layers[i];
        Tensor? p = !Clusters.HasProjection[i] ? null : _ownProj[i] >= 0 ? out_projs[_ownProj[i]] : tied!.Projections[i];
        return (w, p);
    }

    static Tensor Logits(Tensor hidden, Tensor w, Tensor b, Tensor? p) =>
        nn.functional.linear(p is null ? hidden : torch.matmul(hidden, p), w, b);

    Tensor HeadLogProbs(Tensor hidden, AdaptiveWeights? tied)
    {
        var (w, p) = Cluster(0, tied);
        var b = out_biases[0];
        Tensor bias = b;
        if (cluster_weight is not null) { w = torch.cat([w, cluster_weight], 0); bias = torch.cat([b, cluster_bias!], 0); }
        return nn.functional.log_softmax(Logits(hidden, w, bias, p), -1);
    }

    void CheckHidden(Tensor hidden)
    {
        if (hidden.dim() != 2 || hidden.shape[1] != Clusters.DProj)
            throw new ArgumentException($"AdaptiveLogSoftmax expects hidden [N, {Clusters.DProj}]; got [{string.Join(", ", hidden.shape)}].", nameof(hidden));
    }

    /// <summary>Full log-probabilities [N, V] for hidden states [N, d_proj]. Memory O(N V): for small vocabularies and tests.</summary>
    public Tensor LogProbs(Tensor hidden, AdaptiveWeights? tied = null)
    {
        CheckHidden(hidden);
        using var scope = torch.NewDisposeScope();
        var head = HeadLogProbs(hidden, tied);
        long n0 = Clusters.Size(0);
        var parts = new List<Tensor> { head.narrow(1, 0, n0) };
        for (int i = 1; i < Clusters.Count; i++)
        {
            var (w, p) = Cluster(i, tied);
            var tail = nn.functional.log_softmax(Logits(hidden, w, out_biases[i], p), -1);
            parts.Add(head.narrow(1, n0 + i - 1, 1) + tail);
        }
        return torch.cat(parts, 1).MoveToOuterDisposeScope();
    }

    /// <summary>Negative log-likelihood [N] of targets [N] under hidden states [N, d_proj]; scores each tail cluster only on its own targets.</summary>
    public Tensor Nll(Tensor hidden, Tensor target, AdaptiveWeights? tied = null)
    {
        CheckHidden(hidden);
        if (target.dim() != 1 || target.shape[0] != hidden.shape[0] || target.dtype != ScalarType.Int64)
            throw new ArgumentException($"AdaptiveLogSoftmax targets must be int64 [{hidden.shape[0]}]; got {target.dtype} [{string.Join(", ", target.shape)}].", nameof(target));
        using var scope = torch.NewDisposeScope();
        if (target.numel() > 0)
        {
            var (lo, hi) = (target.min().item<long>(), target.max().item<long>());
            if (lo < 0 || hi >= Clusters.NToken)
                throw new ArgumentOutOfRangeException(nameof(target), $"Targets must lie in [0, {Clusters.NToken}); got range [{lo}, {hi}].");
        }
        var head = HeadLogProbs(hidden, tied);
        if (Clusters.Count == 1)
            return (-head.gather(1, target.unsqueeze(1)).squeeze(1)).MoveToOuterDisposeScope();
        var nll = torch.zeros(target.shape[0], dtype: hidden.dtype, device: hidden.device);
        long n0 = Clusters.Size(0);
        for (int i = 0; i < Clusters.Count; i++)
        {
            var idx = ((target >= Clusters.Starts[i]) & (target < Clusters.Ends[i])).nonzero().squeeze(1);
            if (idx.numel() == 0) continue;
            var local = target.index_select(0, idx) - Clusters.Starts[i];
            var headRows = head.index_select(0, idx);
            Tensor lp;
            if (i == 0) lp = headRows.gather(1, local.unsqueeze(1)).squeeze(1);
            else
            {
                var (w, p) = Cluster(i, tied);
                var tail = nn.functional.log_softmax(Logits(hidden.index_select(0, idx), w, out_biases[i], p), -1);
                lp = headRows.select(1, n0 + i - 1) + tail.gather(1, local.unsqueeze(1)).squeeze(1);
            }
            nll = nll.index_copy(0, idx, -lp);
        }
        return nll.MoveToOuterDisposeScope();
    }
}
