namespace Deq.Experiments;

/// <summary>Language-model rows for the JSON reports.</summary>
public static class LmReport
{
    /// <summary>A trained contender as a report row, beside <paramref name="paper"/> when given.</summary>
    public static ResultRow Row(LmRun run, long? memoryBytes, PaperRow? paper = null) =>
        new($"{run.Label} ({run.Config})", run.Parameters, "test perplexity", run.TestPerplexity, memoryBytes, run.Steps, run.Seconds,
            paper?.Model, paper?.Metric, paper?.MemoryGB,
            new Dictionary<string, double> { ["nonEmbeddingParameters"] = run.NonEmbedding, ["testTokens"] = run.TestTokens, ["finalTrainLoss"] = run.FinalTrainLoss });
}
