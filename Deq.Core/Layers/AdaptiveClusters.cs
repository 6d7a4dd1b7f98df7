namespace Deq.Layers;

/// <summary>
/// The vocabulary split of adaptive input/softmax (Baevski and Auli 2019; Grave et al. 2017):
/// cutoffs c_1 &lt; ... &lt; c_n cut [0, V) into clusters [0, c_1), [c_1, c_2), ..., [c_n, V); cluster i
/// has width d_embed / div_val^i, and a projection to d_proj unless div_val is 1 and the widths agree
/// (Transformer-XL's rule). E.g. WikiText-103: cutoffs [20000, 40000, 200000], div_val 4.
/// </summary>
public sealed record AdaptiveClusters
{
    /// <summary>Validates and builds the split.</summary>
    public AdaptiveClusters(long nToken, long dEmbed, long dProj, IReadOnlyList<int>? cutoffs = null, int divVal = 1)
    {
        var cuts = cutoffs ?? [];
        if (nToken < 1) throw new ArgumentOutOfRangeException(nameof(nToken), nToken, "Vocabulary size must be positive.");
        if (divVal < 1) throw new ArgumentOutOfRangeException(nameof(divVal), divVal, "div_val must be at least 1.");
        for (int i = 0; i < cuts.Count; i++)
            if (cuts[i] <= (i == 0 ? 0 : cuts[i - 1]) || cuts[i] >= nToken)
                throw new ArgumentException($"Adaptive cutoffs must increase strictly within (0, {nToken}); got [{string.Join(", ", cuts)}].", nameof(cutoffs));
        var ends = cuts.Select(c => (long)c).Append(nToken).ToArray();
        Starts = ends.Prepend(0L).Take(ends.Length).ToArray();
        Ends = ends;
        Widths = Enumerable.Range(0, ends.Length).Select(i => dEmbed / (long)Math.Pow(divVal, i)).ToArray();
        if (Widths.Any(w => w < 1))
            throw new ArgumentException($"d_embed {dEmbed} / div_val {divVal}^i drops below 1 for {ends.Length} clusters.", nameof(divVal));
        HasProjection = Widths.Select(w => divVal != 1 || w != dProj).ToArray();
        (NToken, DEmbed, DProj, DivVal) = (nToken, dEmbed, dProj, divVal);
    }

    /// <summary>Vocabulary size.</summary>
    public long NToken { get; }
    /// <summary>Width of the head cluster's embedding.</summary>
    public long DEmbed { get; }
    /// <summary>Model width every cluster projects to.</summary>
    public long DProj { get; }
    /// <summary>Width divisor per cluster.</summary>
    public int DivVal { get; }
    /// <summary>First token of each cluster.</summary>
    public long[] Starts { get; }
    /// <summary>One past the last token of each cluster.</summary>
    public long[] Ends { get; }
    /// <summary>Embedding width of each cluster.</summary>
    public long[] Widths { get; }
    /// <summary>Whether each cluster has a projection to d_proj.</summary>
    public bool[] HasProjection { get; }
    /// <summary>Number of clusters (1 + number of cutoffs).</summary>
    public int Count => Ends.Length;
    /// <summary>Tokens in cluster i.</summary>
    public long Size(int i) => Ends[i] - Starts[i];
}
