using Deq.Data;
using TorchSharp;

namespace Deq.Experiments;

/// <summary>
/// A corpus for a language-modelling experiment: the real one when <see cref="CorpusLocator"/> finds it,
/// else a small synthetic Markov-chain corpus, so a notebook still runs (its numbers are then not comparable).
/// </summary>
/// <param name="Corpus">The token streams and vocabulary.</param>
/// <param name="Synthetic">True when the real corpus was missing.</param>
/// <param name="Description">For table titles and notes: the corpus and its size, or why it is synthetic.</param>
public sealed record LmData(Corpus Corpus, bool Synthetic, string Description) : IDisposable
{
    /// <summary>Loads <paramref name="name"/> ("ptb", "wikitext-2", "wikitext-103") or, when absent, a synthetic stand-in.</summary>
    public static LmData Load(string name)
    {
        if (CorpusLocator.Find(name) is { } dir)
        {
            var c = Corpus.Load(dir);
            return new LmData(c, false, $"{c.Name} ({c.Train.shape[0]:N0} training tokens, vocabulary {c.Vocabulary.Count:N0})");
        }
        var s = SyntheticCorpus(vocab: 500, trainTokens: 100_000, seed: 0);
        return new LmData(s, true, $"{name} NOT FOUND: synthetic Markov-chain data (vocabulary 500); not comparable to the paper. {CorpusLocator.Missing(name)}");
    }

    /// <summary>The first of <paramref name="names"/> that is found, else a synthetic stand-in for the last.</summary>
    public static LmData LoadFirst(params string[] names)
    {
        foreach (var n in names)
            if (CorpusLocator.Find(n) is not null) return Load(n);
        return Load(names[^1]);
    }

    /// <summary>
    /// A first-order Markov chain: each word has 4 successors drawn once at random, taken with probabilities
    /// 0.6 / 0.2 / 0.1 / 0.1 (entropy 1.09 nats: the best achievable perplexity is about 3).
    /// Valid and test are a tenth of the training length each.
    /// </summary>
    public static Corpus SyntheticCorpus(int vocab, int trainTokens, int seed)
    {
        if (vocab < 5) throw new ArgumentOutOfRangeException(nameof(vocab), vocab, "SyntheticCorpus needs a vocabulary of at least 5 words.");
        if (trainTokens < 100) throw new ArgumentOutOfRangeException(nameof(trainTokens), trainTokens, "SyntheticCorpus needs at least 100 training tokens.");
        var rng = new Random(seed);
        var successors = Enumerable.Range(0, vocab).Select(_ => Enumerable.Range(0, 4).Select(_ => rng.Next(vocab)).ToArray()).ToArray();
        double[] cumulative = [0.6, 0.8, 0.9, 1.0];
        long[] Stream(int n)
        {
            var s = new long[n];
            int w = rng.Next(vocab);
            for (int i = 0; i < n; i++)
            {
                double u = rng.NextDouble();
                w = successors[w][Array.FindIndex(cumulative, c => u < c) is var k and >= 0 ? k : 3];
                s[i] = w;
            }
            return s;
        }
        var words = Vocabulary.Of(Enumerable.Range(0, vocab).Select(i => i == 0 ? Vocabulary.Eos : $"w{i}"));
        int held = Math.Max(trainTokens / 10, 50);
        return new Corpus("synthetic", words, torch.tensor(Stream(trainTokens)), torch.tensor(Stream(held)), torch.tensor(Stream(held)));
    }

    /// <summary>Frees the token tensors.</summary>
    public void Dispose() => Corpus.Dispose();
}
