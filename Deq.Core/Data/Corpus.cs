using TorchSharp;
using static TorchSharp.torch;

namespace Deq.Data;

/// <summary>A word-level corpus: the training vocabulary and the three splits as 1-D int64 token ids on the CPU.</summary>
/// <param name="Name">"ptb", or the directory's name (e.g. "wikitext-2").</param>
/// <param name="Vocabulary">Built from the training split, first-occurrence order, &lt;eos&gt; included.</param>
/// <param name="Train">Training token ids.</param>
/// <param name="Valid">Validation token ids.</param>
/// <param name="Test">Test token ids.</param>
public sealed record Corpus(string Name, Vocabulary Vocabulary, Tensor Train, Tensor Valid, Tensor Test) : IDisposable
{
    /// <summary>
    /// Reads ptb.*.txt, wiki.*.tokens or {train,valid,test}.txt from <paramref name="dir"/>.
    /// Missing files, checksum mismatches, empty or binary files and unknown words are errors naming the file.
    /// </summary>
    public static Corpus Load(string dir, CorpusOptions? options = null)
    {
        options ??= new CorpusOptions();
        var layout = CorpusLayout.Detect(dir);
        var paths = layout.Files.Select(f => Path.Combine(dir, f)).ToArray();
        if (options.VerifyChecksums)
            foreach (var p in paths) KnownFiles.Verify(p);
        var (vocab, train) = TokenFile.Build(paths[0]);
        var valid = TokenFile.Encode(paths[1], vocab, options.Unknown);
        var test = TokenFile.Encode(paths[2], vocab, options.Unknown);
        return new Corpus(layout.NameFor(dir), vocab, torch.tensor(train), torch.tensor(valid), torch.tensor(test));
    }

    /// <summary>Encodes another text file with this corpus's vocabulary (for evaluating on new text).</summary>
    public Tensor Encode(string path, UnknownWords unknown = UnknownWords.Error) =>
        torch.tensor(TokenFile.Encode(path, Vocabulary, unknown));

    /// <summary>Frees the three token tensors.</summary>
    public void Dispose()
    {
        Train.Dispose();
        Valid.Dispose();
        Test.Dispose();
    }
}
