namespace Deq.Models;

/// <summary>
/// Hyperparameters of a DEQ-TrellisNet language model. Defaults are the "tiny" CPU size; the paper's
/// settings are the static presets (numbers from the reference's run scripts).
/// </summary>
/// <param name="NToken">Vocabulary size.</param>
/// <param name="NInp">Embedding width (d_embed).</param>
/// <param name="NHid">Hidden units of the LSTM-style state besides the output units.</param>
/// <param name="NOut">Output units; the state h has NHid + NOut channels, and so has c.</param>
/// <param name="KernelSize">Temporal kernel size k of the weight-shared causal convolution.</param>
/// <param name="SeqLen">Segment length.</param>
/// <param name="Dropout">Locked dropout on the output features.</param>
/// <param name="DropoutI">Locked dropout on the embedded input.</param>
/// <param name="DropoutH">Variational dropout on the hidden state entering the convolution.</param>
/// <param name="EmbDropout">Word-level embedding dropout (a dropped word type is zero throughout the batch).</param>
/// <param name="WeightDrop">DropConnect on the convolution's and the injection's weight (direction), sampled once per forward
/// (the reference's WeightDrop on weight_v).</param>
/// <param name="WeightNorm">Weight-normalise the convolution and the injection.</param>
/// <param name="TieWeights">Tie the softmax weight to the embedding.</param>
/// <param name="Cutoffs">Adaptive embedding/softmax cutoffs; null or empty for a plain softmax.</param>
/// <param name="DivVal">Width divisor per adaptive cluster.</param>
/// <param name="InitStd">f's and the injection's parameters ~ N(0, InitStd): the paper's 0.05 (the reference code draws the
/// convolution from N(0, 0.01) and leaves the injection at PyTorch's default).</param>
/// <param name="EmbedInitStd">Embedding ~ N(0, EmbedInitStd) (departure: the reference draws it from U(-0.1, 0.1)).</param>
/// <param name="Schedule">Solver and gradient schedule; null for the defaults.</param>
public sealed record DeqTrellisNetConfig(
    int NToken = 100,
    int NInp = 16,
    int NHid = 16,
    int NOut = 16,
    int KernelSize = 2,
    int SeqLen = 8,
    double Dropout = 0.0,
    double DropoutI = 0.0,
    double DropoutH = 0.0,
    double EmbDropout = 0.0,
    double WeightDrop = 0.0,
    bool WeightNorm = true,
    bool TieWeights = true,
    IReadOnlyList<int>? Cutoffs = null,
    int DivVal = 1,
    double InitStd = 0.05,
    double EmbedInitStd = 0.1,
    EquilibriumSchedule? Schedule = null)
{
    /// <summary>Channels of h (and of c): NHid + NOut.</summary>
    public int HSize => NHid + NOut;

    /// <summary>The schedule actually used.</summary>
    public EquilibriumSchedule EffectiveSchedule => Schedule ?? new EquilibriumSchedule();

    /// <summary>A CPU-sized model (h 32 channels, vocabulary 100): a training step well under a second on 2 cores.</summary>
    public static DeqTrellisNetConfig Tiny { get; } = new(Schedule: EquilibriumSchedule.Lean(unrolledLayers: 8, forwardIterations: 30, backwardIterations: 30));

    /// <summary>
    /// The paper's Penn Treebank DEQ-TrellisNet (24M parameters), from the reference's PTB script: d_embed 400,
    /// nhid 1000, nout 400, k 2, dropouts 0.45 / 0.45 / 0.28, embedding dropout 0.1, weight drop 0.5,
    /// segments of 110, 30,000 pretraining steps with 40 unrolled layers, 45 Broyden steps each way.
    /// </summary>
    public static DeqTrellisNetConfig Ptb { get; } = new(
        NToken: 10000, NInp: 400, NHid: 1000, NOut: 400, KernelSize: 2, SeqLen: 110,
        Dropout: 0.45, DropoutI: 0.45, DropoutH: 0.28, EmbDropout: 0.1, WeightDrop: 0.5,
        Schedule: EquilibriumSchedule.Lean(pretrainSteps: 30000, unrolledLayers: 40, forwardIterations: 45, backwardIterations: 45));

    /// <summary>
    /// The paper's WikiText-103 DEQ-TrellisNet (180M parameters, full tied softmax), from the reference's WT103 script:
    /// d_embed 500, nhid 1500, nout 500, k 2, dropouts 0.1, segments of 100, 30,000 pretraining steps with 40 layers.
    /// </summary>
    public static DeqTrellisNetConfig Wt103 { get; } = new(
        NToken: 267735, NInp: 500, NHid: 1500, NOut: 500, KernelSize: 2, SeqLen: 100,
        Dropout: 0.1, DropoutI: 0.1, DropoutH: 0.1,
        Schedule: EquilibriumSchedule.Lean(pretrainSteps: 30000, unrolledLayers: 40, forwardIterations: 45, backwardIterations: 45));

    /// <summary>Throws an <see cref="ArgumentException"/> naming the first inconsistent setting.</summary>
    public DeqTrellisNetConfig Validate()
    {
        void Positive(int v, string name) { if (v < 1) throw new ArgumentOutOfRangeException(name, v, $"DeqTrellisNetConfig.{name} must be positive."); }
        Positive(NToken, nameof(NToken)); Positive(NInp, nameof(NInp)); Positive(NOut, nameof(NOut));
        Positive(KernelSize, nameof(KernelSize)); Positive(SeqLen, nameof(SeqLen));
        // Departure: the reference allows NOut != NInp with an untied decoder; here the embedding and the
        // softmax share one width (as the paper's tied models all do).
        if (NOut != NInp) throw new ArgumentException($"DeqTrellisNetConfig.NOut must equal NInp (the tied embedding width); got NInp {NInp}, NOut {NOut}.", nameof(NOut));
        if (NHid < 0) throw new ArgumentOutOfRangeException(nameof(NHid), NHid, "DeqTrellisNetConfig.NHid must be non-negative.");
        foreach (var (p, name) in new[] { (Dropout, nameof(Dropout)), (DropoutI, nameof(DropoutI)), (DropoutH, nameof(DropoutH)), (EmbDropout, nameof(EmbDropout)), (WeightDrop, nameof(WeightDrop)) })
            if (!(p >= 0 && p < 1)) throw new ArgumentOutOfRangeException(name, p, $"DeqTrellisNetConfig.{name} must lie in [0, 1).");
        return this;
    }
}
