using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;
using static Deq.Layers.Temporaries;

namespace Deq.Layers;

/// <summary>
/// Transformer-XL's multi-head self-attention with relative positions (Dai et al. 2019), in the DEQ
/// form: queries come from z, keys and values from [memory; z], and the input injection is added
/// to the q/k/v projections. Scores are (q + u)^T k + rel-shift((q + v)^T W_r R), scaled by 1/sqrt(d_head),
/// causally masked; then the output projection, dropout, residual and layer norm.
/// </summary>
public sealed class RelativeMultiHeadAttention : nn.Module
{
    /// <summary>Joint q/k/v projection, no bias (d_model -> 3 n_head d_head).</summary>
    public readonly WeightNormLinear qkv_net;
    /// <summary>Projection of the relative position embeddings, no bias.</summary>
    public readonly WeightNormLinear r_net;
    /// <summary>Output projection with bias.</summary>
    public readonly WeightNormLinear o_net;
    /// <summary>The content bias u of Transformer-XL, [n_head, d_head].</summary>
    public readonly Parameter r_w_bias;
    /// <summary>The position bias v of Transformer-XL, [n_head, d_head].</summary>
    public readonly Parameter r_r_bias;

    /// <summary>Model width.</summary>
    public long DModel { get; }
    /// <summary>Heads.</summary>
    public long NHead { get; }
    /// <summary>Width per head.</summary>
    public long DHead { get; }
    /// <summary>Layer norm before (true) or after (false, the reference's default) the residual.</summary>
    public bool PreLayerNorm { get; }

    /// <summary>Builds the attention; weights and the u/v biases from N(0, initStd).</summary>
    public RelativeMultiHeadAttention(long dModel, long nHead, long dHead, bool preLayerNorm = false, bool weightNorm = false, double initStd = 0.05)
        : base(nameof(RelativeMultiHeadAttention))
    {
        if (dModel < 1 || nHead < 1 || dHead < 1)
            throw new ArgumentOutOfRangeException(nameof(dModel), $"Attention sizes must be positive; got d_model {dModel}, n_head {nHead}, d_head {dHead}.");
        (DModel, NHead, DHead, PreLayerNorm) = (dModel, nHead, dHead, preLayerNorm);
        qkv_net = new WeightNormLinear(dModel, 3 * nHead * dHead, hasBias: false, weightNorm, initStd);
        r_net = new WeightNormLinear(dModel, nHead * dHead, hasBias: false, weightNorm, initStd);
        o_net = new WeightNormLinear(nHead * dHead, dModel, hasBias: true, weightNorm, initStd);
        r_w_bias = new Parameter(torch.randn(nHead, dHead) * initStd);
        r_r_bias = new Parameter(torch.randn(nHead, dHead) * initStd);
        RegisterComponents();
    }

    /// <summary>Width of the input injection this layer expects: 3 n_head d_head (added to q, k, v).</summary>
    public long InjectionWidth => 3 * NHead * DHead;

    /// <summary>
    /// One attention sublayer. <paramref name="z"/> [B, T, d]; <paramref name="memory"/> [B, M, d] (M may be 0);
    /// <paramref name="injection"/> [B, M+T, 3 H dh]; <paramref name="positions"/> [M+T, d] (distances M+T-1..0);
    /// <paramref name="outMask"/> a dropout mask for the output projection (null: none);
    /// <paramref name="attnMask"/> a dropout mask for the attention probabilities [B, H, T, M+T] (null: none).
    /// Returns [B, T, d].
    /// </summary>
    public Tensor Forward(Tensor z, Tensor memory, Tensor injection, Tensor positions, Tensor? outMask = null, Tensor? attnMask = null)
    {
        long b = z.shape[0], t = z.shape[1], m = memory.shape[1], k = m + t, h = NHead, dh = DHead;
        if (z.shape[2] != DModel || memory.shape[2] != DModel || memory.shape[0] != b)
            throw new ArgumentException($"Attention expects z [B, T, {DModel}] and memory [B, M, {DModel}]; got [{string.Join(", ", z.shape)}] and [{string.Join(", ", memory.shape)}].");
        if (!injection.shape.SequenceEqual(new[] { b, k, InjectionWidth }))
            throw new ArgumentException($"Attention injection must be [{b}, {k}, {InjectionWidth}]; got [{string.Join(", ", injection.shape)}].", nameof(injection));
        if (positions.shape[0] != k)
            throw new ArgumentException($"Attention needs {k} relative position embeddings; got {positions.shape[0]}.", nameof(positions));

        // f runs once per solver step: each large temporary (scores are [B, H, T, M+T]) is freed as soon as
        // the next one exists, not when f returns; with grad off the score arithmetic runs in place.
        // (Autograd keeps what backward needs on its own, so early disposal changes no graph.)
        using var scope = torch.NewDisposeScope();
        bool inPlace = !torch.is_grad_enabled();
        var cat = m == 0 ? z : torch.cat([memory, z], 1);
        if (PreLayerNorm) cat = LayerNorms.Plain(cat);
        var projected = qkv_net.Forward(cat);
        var heads = inPlace ? projected.add_(injection) : Replace(projected, projected + injection);   // [B, K, 3 H dh]
        var qkv = heads.chunk(3, -1);
        var q = qkv[0].narrow(1, m, t).reshape(b, t, h, dh);
        var key = qkv[1].reshape(b, k, h, dh);
        var value = qkv[2].reshape(b, k, h, dh);
        var r = r_net.Forward(positions).reshape(k, h, dh);

        var ac = Scores(q, r_w_bias, qu => torch.einsum("bihd,bjhd->bhij", qu, key));
        var bd = Scores(q, r_r_bias, qv =>
        {
            using var unshifted = torch.einsum("bihd,jhd->bhij", qv, r);
            return RelShift(unshifted);
        });
        key.Dispose();
        var scores = inPlace ? ac.add_(bd).mul_(1.0 / Math.Sqrt(dh)).masked_fill_(CausalMask(t, m, z.device), double.NegativeInfinity)
            : Replace(ac, ((ac + bd) * (1.0 / Math.Sqrt(dh))).masked_fill(CausalMask(t, m, z.device), double.NegativeInfinity));
        bd.Dispose();
        var prob = Replace(scores, nn.functional.softmax(scores, -1));
        if (attnMask is not null) prob = inPlace ? prob.mul_(attnMask) : Replace(prob, prob * attnMask);
        var vec = Replace(prob, torch.einsum("bhij,bjhd->bihd", prob, value).reshape(b, t, h * dh));
        var output = Replace(vec, o_net.Forward(vec));
        if (outMask is not null) output = inPlace ? output.mul_(outMask) : Replace(output, output * outMask);
        var residual = inPlace ? output.add_(z) : Replace(output, output + z);
        var result = PreLayerNorm ? residual : Replace(residual, LayerNorms.Plain(residual));
        return scope.MoveToOuter(result);
    }

    // One score term: (q + bias) through score, with q + bias freed once it has served.
    static Tensor Scores(Tensor q, Tensor bias, Func<Tensor, Tensor> score)
    {
        using var shifted = q + bias;
        return score(shifted);
    }

    /// <summary>
    /// True where query i (of T, after M memory positions) must not see key j: j &gt; M + i.
    /// Made on <paramref name="device"/>.
    /// </summary>
    public static Tensor CausalMask(long t, long m, Device device) =>
        torch.ones(t, m + t, dtype: ScalarType.Bool, device: device).triu(1 + m);

    /// <summary>
    /// Transformer-XL's relative shift. Input [..., T, K] with column j scored against distance K-1-j;
    /// output [..., T, K] with column j scored against the query's distance to key j, (K-T+i) - j,
    /// for every j &lt;= K-T+i (the entries above that diagonal are junk and get masked).
    /// </summary>
    public static Tensor RelShift(Tensor x)
    {
        var shape = x.shape;
        long t = shape[^2], k = shape[^1];
        var lead = shape[..^2];
        using var padded = nn.functional.pad(x, [1, 0]);               // [..., T, K+1]
        using var viewed = padded.reshape([.. lead, k + 1, t]);
        using var narrowed = viewed.narrow(-2, 1, k);
        return narrowed.reshape(shape);
    }
}
