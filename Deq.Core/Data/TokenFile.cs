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
        var chars = new char[1024];
        using var stream = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, 1 << 16, FileOptions.SequentialScan);
        // Lines are split as bytes and each is decoded on its own, so an encoding error names its own line
        // (a StreamReader decodes whole buffers ahead of the line it returns).
        foreach (var bytes in Lines(stream))
        {
            lineNo++;
            var span = Decode(bytes.Span, ref chars, path, lineNo);
            if (span.Contains('\0'))
                throw new InvalidDataException($"{path}:{lineNo}: NUL byte in the text; this looks like a binary file, not a tokenised corpus. Give the corpus's text files.");
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
        Array.Resize(ref output, checked((int)count));
        return output;
    }

    /// <summary>One line's bytes as UTF-8 text; invalid bytes are an error naming the line and the byte's column.</summary>
    static ReadOnlySpan<char> Decode(ReadOnlySpan<byte> bytes, ref char[] chars, string path, long lineNo)
    {
        // UTF-8 never decodes to more chars than bytes.
        if (chars.Length < bytes.Length) chars = new char[bytes.Length * 2];
        try
        {
            int n = StrictUtf8.GetChars(bytes, chars);
            return chars.AsSpan(0, n);
        }
        catch (DecoderFallbackException ex)
        {
            var at = ex.Index >= 0 ? $" at byte {ex.Index + 1} of the line" : "";
            var what = ex.BytesUnknown is { Length: > 0 } b ? $"byte 0x{b[0]:X2}" : "a byte";
            throw new InvalidDataException(
                $"{path}:{lineNo}: not valid UTF-8 text ({what}{at}); " +
                "this looks like a binary or mis-encoded file. Convert it to UTF-8 or give the corpus's text files.", ex);
        }
    }

    /// <summary>The stream's lines as bytes, without the '\n' (and a '\r' before it). The memory is reused between lines.</summary>
    static IEnumerable<ReadOnlyMemory<byte>> Lines(Stream stream)
    {
        var buffer = new byte[1 << 16];
        int filled = 0, lineStart = 0;
        while (true)
        {
            int read = stream.Read(buffer, filled, buffer.Length - filled);
            if (read == 0) break;
            filled += read;
            int scan = lineStart;
            while (true)
            {
                int nl = Array.IndexOf(buffer, (byte)'\n', scan, filled - scan);
                if (nl < 0) break;
                yield return Trimmed(buffer, lineStart, nl);
                lineStart = scan = nl + 1;
            }
            if (lineStart > 0)
            {
                Buffer.BlockCopy(buffer, lineStart, buffer, 0, filled - lineStart);
                filled -= lineStart;
                lineStart = 0;
            }
            if (filled == buffer.Length) Array.Resize(ref buffer, buffer.Length * 2);
        }
        if (filled > lineStart) yield return Trimmed(buffer, lineStart, filled);
    }

    static ReadOnlyMemory<byte> Trimmed(byte[] buffer, int start, int end) =>
        buffer.AsMemory(start, end > start && buffer[end - 1] == '\r' ? end - 1 - start : end - start);

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
        (hasUnk ? " The vocabulary has <unk>: map unknown words to it with UnknownWords.MapToUnk (deq: --unknown-words map)."
            : " The training split has no <unk> to map it to: the splits come from different corpora, or the file needs fixing."));
}
