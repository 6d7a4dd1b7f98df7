namespace Deq.Data;

/// <summary>How a corpus directory is read.</summary>
/// <param name="Unknown">Valid/test words missing from the training vocabulary: an error (default) or mapped to &lt;unk&gt;.</param>
/// <param name="VerifyChecksums">Check files of known name and size against their published sha256.</param>
public sealed record CorpusOptions(UnknownWords Unknown = UnknownWords.Error, bool VerifyChecksums = true);
