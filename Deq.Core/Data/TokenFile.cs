using System.Text;

namespace Deq.Data;

/// <summary>
/// Turns a text file into token ids: whitespace-separated words per line plus one &lt;eos&gt; per line
/// (blank lines included), as the reference word-level LM code does. Streams line by line so
/// WikiText-103 never sits in memory as one string.
/// </summary>
public static class TokenFile
{
    static readonly UTF8Encoding StrictUtf8 = new(encoderShouldEmitUTF8Identifier: false, throwOnInvalidBytes: true);

    /// <summary>Builds a vocabulary (first-occurrence order, &lt;eos&gt; included) and encodes the file with it.</summary>
    public static (Vocabulary Vocabulary, long[] Ids) Build(string path)
    {
        var ids = new Dictionary<string, int>(StringComparer.Ordinal);
        var words = new List<string>();
        var tokens = Read(path, ids, words, UnknownWords.Error);
        if (tokens.Length == 0)
            throw new InvalidDataException($"{path}: the training file is empty (no lines, no tokens); a corpus needs training text.");
        return (new Vocabulary(words.ToArray(), ids), tokens);
    }

    /// <summary>Encodes a file with a fixed vocabulary; unknown words follow <paramref name="unknown"/>.</summary>
    public static long[] Encode(string path, Vocabulary vocabulary, UnknownWords unknown = UnknownWords.Error) =>
        Read(path, vocabulary.Ids, null, unknown);

    static long[] Read(string path, Dictionary<string, int> ids, List<string>? growing, UnknownWords unknown)
    {
        if (!File.Exists(path)) throw new FileNotFoundException($"{path}: no such file.", path);
        var lookup = ids.GetAlternateLookup<ReadOnlySpan<char>>();
        int? unk = unknown == UnknownWords.MapToUnk && ids.TryGetValue(Vocabulary.Unk, out var u) ? u : null;
        var output = new long[Math.Max(1024, new FileInfo(path).Length / 5)];
        long count = 0;
        long lineNo = 0;
        using var reader = new StreamReader(path, StrictUtf8, detectEncodingFromByteOrderMarks: false, bufferSize: 1 << 16);
        try
        {
            while (reader.ReadLine() is { } line)
            {
                lineNo++;
                var span = line.AsSpan();
                if (span.Contains('\0'))
                    throw new InvalidDataException($"{path}:{lineNo}: NUL byte in the text; this looks like a binary file, not a tokenised corpus.");
                int i = 0;
                while (true)
                {
                    while (i < span.Length && char.IsWhiteSpace(span[i])) i++;
                    if (i >= span.Length) break;
                    int start = i;
                    while (i < span.Length && !char.IsWhiteSpace(span[i])) i++;
                    var word = span[start..i];
                    if (!lookup.TryGetValue(word, out var id))
                    {
                        if (growing is not null) id = Add(ids, growing, word.ToString());
                        else id = unk ?? throw Unknown(path, lineNo, word.ToString(), ids.ContainsKey(Vocabulary.Unk));
                    }
                    Append(ref output, ref count, id);
                }
                int eos = ids.TryGetValue(Vocabulary.Eos, out var e) ? e
                    : growing is not null ? Add(ids, growing, Vocabulary.Eos)
                    : throw Unknown(path, lineNo, Vocabulary.Eos, false);
                Append(ref output, ref count, eos);
            }
        }
        catch (DecoderFallbackException ex)
        {
            throw new InvalidDataException($"{path}:{lineNo + 1}: not valid UTF-8 text ({ex.Message}); this looks like a binary or mis-encoded file.", ex);
        }
        Array.Resize(ref output, checked((int)count));
        return output;
    }

    static int Add(Dictionary<string, int> ids, List<string> words, string word)
    {
        ids.Add(word, words.Count);
        words.Add(word);
        return words.Count - 1;
    }

    static void Append(ref long[] buffer, ref long count, long id)
    {
        if (count == buffer.Length) Array.Resize(ref buffer, checked((int)Math.Min(Array.MaxLength, buffer.Length * 2L)));
        buffer[count++] = id;
    }

    static InvalidDataException Unknown(string path, long line, string word, bool hasUnk) => new(
        $"{path}:{line}: word '{word}' is not in the training vocabulary." +
        (hasUnk ? " The vocabulary has <unk>: pass UnknownWords.MapToUnk to map unknown words to it." : ""));
}
