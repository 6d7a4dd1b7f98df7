namespace Deq.Experiments;

/// <summary>One published row: a model and its numbers as the paper prints them.</summary>
/// <param name="Model">The row label.</param>
/// <param name="Params">Parameter count as printed ("24M", "14K"), or "-".</param>
/// <param name="NonEmbedding">Non-embedding model size, or "-".</param>
/// <param name="Metric">Test loss or perplexity.</param>
/// <param name="MemoryGB">Training memory in GB at the paper's benchmark setting, or null.</param>
public sealed record PaperRow(string Model, string Params, string NonEmbedding, double Metric, double? MemoryGB);

/// <summary>
/// The numbers of Bai, Kolter and Koltun, "Deep Equilibrium Models" (NeurIPS 2019), Tables 1-4,
/// copied from the paper. Memory is "benchmarked on input sequence length 150 and batch size 15
/// ... not including the memory for word embeddings" (Table 2 note).
/// </summary>
public static class PaperResults
{
    /// <summary>Table 1: copy memory, T = 400, loss; sizes are parameter counts.</summary>
    public static IReadOnlyList<PaperRow> CopyMemory { get; } =
    [
        new("DEQ-Transformer", "14K", "-", 3.5e-6, null),
        new("TCN", "16K", "-", 2.7e-5, null),
        new("LSTM", "14K", "-", 0.0501, null),
        new("GRU", "14K", "-", 0.0491, null),
    ];

    /// <summary>Table 2: Penn Treebank word level, test perplexity (the two TrellisNet rows).</summary>
    public static IReadOnlyList<PaperRow> Ptb { get; } =
    [
        new("60-layer TrellisNet (w/ auxiliary loss, w/o MoS)", "24M", "20M", 57.0, 8.5),
        new("DEQ-TrellisNet", "24M", "20M", 57.1, 1.2),
    ];

    /// <summary>Table 3: WikiText-103, test perplexity (the DEQ rows and their baselines).</summary>
    public static IReadOnlyList<PaperRow> WikiText103 { get; } =
    [
        new("70-layer TrellisNet (+ auxiliary loss, etc.)", "180M", "45M", 29.2, 24.7),
        new("DEQ-TrellisNet", "180M", "45M", 29.0, 3.3),
        new("Transformer-XL (medium, 16 layers)", "165M", "44M", 24.3, 8.5),
        new("DEQ-Transformer (medium)", "172M", "43M", 24.2, 2.7),
        new("Transformer-XL (medium, 18 layers, adaptive embed.)", "110M", "72M", 23.6, 9.0),
        new("DEQ-Transformer (medium, adaptive embed.)", "110M", "70M", 23.2, 3.7),
        new("Transformer-XL (small, 4 layers)", "139M", "4.9M", 35.8, 4.8),
        new("Transformer-XL (small, weight-tied 16 layers)", "138M", "4.5M", 34.9, 6.8),
        new("DEQ-Transformer (small)", "138M", "4.5M", 32.4, 1.1),
    ];

    /// <summary>Table 4: runtime ratios DEQ / baseline on WikiText-103 (greater than 1: DEQ slower).</summary>
    public static IReadOnlyList<(string Baseline, double Training, double Inference)> RuntimeRatios { get; } =
    [
        ("18-layer Transformer", 2.82, 1.76),
        ("70-layer TrellisNet", 2.40, 1.64),
    ];

    /// <summary>The paper's headline: "an over 80% (up to 88%) reduction in memory consumption".</summary>
    public const double HeadlineMemoryReduction = 0.88;
}
