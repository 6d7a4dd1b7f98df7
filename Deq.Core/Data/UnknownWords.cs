namespace Deq.Data;

/// <summary>What to do with a valid/test word that the training text never had.</summary>
public enum UnknownWords
{
    /// <summary>Stop with an error naming the file, line and word (the default: PTB and WikiText never need more).</summary>
    Error,
    /// <summary>Map it to &lt;unk&gt; when the vocabulary has that token; still an error when it has not.</summary>
    MapToUnk,
}
