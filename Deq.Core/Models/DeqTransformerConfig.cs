namespace Deq.Models;

/// <summary>
/// Hyperparameters of a DEQ-Transformer language model. Defaults are the "tiny" CPU size; the
/// paper's settings are the static presets. Construct with named arguments or <c>with</c>.
/// </summary>
/// <param name="NToken">Vocabulary size.</param>
/// <param name="DModel">Width of z (and of the projected embeddings).</param>
/// <param name="NHead">Attention heads.</param>
/// <param name="DHead">Width per head.</param>
/// <param name="DInner">Hidden width of the feed-forward sublayer.</param>
/// <param name="DEmbed">Width of the (head cluster's) embedding table; 0 means DModel.</param>
/// <param name="SeqLen">Segment length (the reference's tgt_len).</param>
/// <param name="MemLen">Equilibrium states remembered across segments.</param>
/// <param name="Dropout">Variational dropout in f, on the embeddings, the positions and the output.</param>
/// <param name="DropAtt">Variational dropout on the attention probabilities.</param>
/// <param name="PreLayerNorm">Layer norm before each sublayer instead of after its residual (reference default: after).</param>
/// <param name="WeightNorm">Weight-normalise f's linear maps.</param>
/// <param name="Cutoffs">Adaptive embedding/softmax cutoffs; null or empty for a plain softmax.</param>
/// <param name="DivVal">Width divisor per adaptive cluster.</param>
/// <param name="TieWeights">Tie the output tables to the embedding tables.</param>
/// <param name="TieProjections">Tie the tail clusters' output projections to the embedding's.</param>
/// <param name="InitStd">f's (and the injection's) parameters ~ N(0, InitStd): the paper's 0.05 (the reference script's
/// default init_std is 0.01). Small models need more, about 1/sqrt(d_model): see <see cref="Tiny"/>.</param>
/// <param name="EmbedInitStd">Embedding tables ~ N(0, EmbedInitStd).</param>
/// <param name="ProjInitStd">Adaptive projections ~ N(0, ProjInitStd).</param>
/// <param name="Schedule">Solver and gradient schedule; null for the defaults.</param>
public sealed record DeqTransformerConfig(
    int NToken = 100,
    int DModel = 16,
    int NHead = 2,
    int DHead = 8,
    int DInner = 32,
    int DEmbed = 0,
    int SeqLen = 8,
    int MemLen = 8,
    double Dropout = 0.0,
    double DropAtt = 0.0,
    bool PreLayerNorm = false,
    bool WeightNorm = false,
    IReadOnlyList<int>? Cutoffs = null,
    int DivVal = 1,
    bool TieWeights = true,
    bool TieProjections = true,
    double InitStd = 0.05,
    double EmbedInitStd = 0.01,
    double ProjInitStd = 0.01,
    EquilibriumSchedule? Schedule = null)
{
    /// <summary>Embedding width actually used.</summary>
    public int EmbedWidth => DEmbed > 0 ? DEmbed : DModel;

    /// <summary>The schedule actually used.</summary>
    public EquilibriumSchedule EffectiveSchedule => Schedule ?? new EquilibriumSchedule();

    /// <summary>
    /// A CPU-sized model (d_model 16, 2 heads, vocabulary 100): a training step well under a second on 2 cores.
    /// Departure: InitStd 0.25 instead of the paper's 0.05. f's Jacobian is about LN'(I + J_h) with J_h of size
    /// InitStd * sqrt(d_model); at d_model 410-700 the paper's 0.05 gives InitStd * sqrt(d) of about 1, but at d_model 16
    /// it leaves f close to LN(LN(z)), whose Jacobian has eigenvalues of about 1 on normalised states: solvers then
    /// stall near a relative residual of 1e-2. Scaling InitStd by 1/sqrt(d) restores a contractive f.
    /// </summary>
    public static DeqTransformerConfig Tiny { get; } = new(InitStd: 0.25, Schedule: EquilibriumSchedule.Lean(unrolledLayers: 4, forwardIterations: 20, backwardIterations: 20));

    /// <summary>
    /// A small CPU preset (d_model 64, 4 heads, d_inner 256, segments of 32 with 32 memory) for quick experiments on PTB-sized data
    /// (InitStd 0.125: the paper's 0.05 scaled by sqrt(410 / 64), see <see cref="Tiny"/>).
    /// </summary>
    public static DeqTransformerConfig CpuSmall { get; } = new(NToken: 10000, DModel: 64, NHead: 4, DHead: 16, DInner: 256, SeqLen: 32, MemLen: 32, Dropout: 0.1, InitStd: 0.125);

    /// <summary>
    /// The paper's WikiText-103 "small" DEQ-Transformer (138M parameters, full tied softmax over 267,735 tokens).
    /// d_model 410 / 10 heads x 41 follows Transformer-XL's base layer. Departure: the paper gives only the parameter
    /// count; d_inner 32,800 is our choice so that the total (about 138M, mostly the 110M embedding) matches it.
    /// </summary>
    public static DeqTransformerConfig Wt103Small { get; } = new(
        NToken: 267735, DModel: 410, NHead: 10, DHead: 41, DInner: 32800, SeqLen: 150, MemLen: 150, Dropout: 0.1,
        Schedule: EquilibriumSchedule.Lean(pretrainSteps: 16000, unrolledLayers: 2, forwardIterations: 30, backwardIterations: 40));

    /// <summary>
    /// The paper's WikiText-103 "medium" DEQ-Transformer with adaptive embedding (110M parameters), from the reference's
    /// run_wt103_deq_transformer.sh: d_model 700, 10 heads x 70, d_inner 46,000, dropout 0.05, segments of 150 with
    /// 150 memory, adaptive cutoffs [20000, 40000, 200000] with div_val 4, 16,000 pretraining steps with 2 unrolled layers.
    /// </summary>
    public static DeqTransformerConfig Wt103Medium { get; } = new(
        NToken: 267735, DModel: 700, NHead: 10, DHead: 70, DInner: 46000, DEmbed: 700, SeqLen: 150, MemLen: 150,
        Dropout: 0.05, DropAtt: 0.0, Cutoffs: [20000, 40000, 200000], DivVal: 4,
        Schedule: EquilibriumSchedule.Lean(pretrainSteps: 16000, unrolledLayers: 2, forwardIterations: 30, backwardIterations: 40));

    /// <summary>Throws an <see cref="ArgumentException"/> naming the first inconsistent setting.</summary>
    public DeqTransformerConfig Validate()
    {
        void Positive(int v, string name) { if (v < 1) throw new ArgumentOutOfRangeException(name, v, $"DeqTransformerConfig.{name} must be positive."); }
        Positive(NToken, nameof(NToken)); Positive(DModel, nameof(DModel)); Positive(NHead, nameof(NHead));
        Positive(DHead, nameof(DHead)); Positive(DInner, nameof(DInner)); Positive(SeqLen, nameof(SeqLen));
        if (MemLen < 0) throw new ArgumentOutOfRangeException(nameof(MemLen), MemLen, "DeqTransformerConfig.MemLen must be non-negative.");
        if (DModel % 2 != 0) throw new ArgumentException($"DeqTransformerConfig.DModel must be even for sinusoidal positions; got {DModel}.", nameof(DModel));
        if (!(Dropout >= 0 && Dropout < 1)) throw new ArgumentOutOfRangeException(nameof(Dropout), Dropout, "DeqTransformerConfig.Dropout must lie in [0, 1).");
        if (!(DropAtt >= 0 && DropAtt < 1)) throw new ArgumentOutOfRangeException(nameof(DropAtt), DropAtt, "DeqTransformerConfig.DropAtt must lie in [0, 1).");
        if (!(InitStd > 0)) throw new ArgumentOutOfRangeException(nameof(InitStd), InitStd, "DeqTransformerConfig.InitStd must be positive.");
        return this;
    }
}
