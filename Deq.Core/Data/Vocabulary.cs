namespace Deq.Data;

/// <summary>
/// Words and their ids, in order of first occurrence in the training text (so ids are deterministic).
/// Immutable once built.
/// </summary>
public sealed class Vocabulary
{
    /// <summary>The end-of-sentence token appended to every line.</summary>
    public const string Eos = "<eos>";

    /// <summary>The unknown-word token PTB and WikiText already contain.</summary>
    public const string Unk = "<unk>";

    readonly string[] _words;
    readonly Dictionary<string, int> _ids;

    internal Vocabulary(string[] words, Dictionary<string, int> ids)
    {
        _words = words;
        _ids = ids;
    }

    /// <summary>A vocabulary of the given words, ids in list order; duplicates are an error.</summary>
    public static Vocabulary Of(IEnumerable<string> words)
    {
        var list = words.ToArray();
        var ids = new Dictionary<string, int>(list.Length, StringComparer.Ordinal);
        for (int i = 0; i < list.Length; i++)
            if (!ids.TryAdd(list[i], i))
                throw new ArgumentException($"Vocabulary.Of: word '{list[i]}' appears twice (at {ids[list[i]]} and {i}).", nameof(words));
        return new Vocabulary(list, ids);
    }

    /// <summary>Number of words.</summary>
    public int Count => _words.Length;

    /// <summary>Words by id.</summary>
    public IReadOnlyList<string> Words => _words;

    /// <summary>The word with this id.</summary>
    public string this[int id] => _words[id];

    /// <summary>The id of a word, or null when it is not in the vocabulary.</summary>
    public int? TryId(string word) => _ids.TryGetValue(word, out var id) ? id : null;

    /// <summary>The id of a word; an unknown word is an error that names it.</summary>
    public int Id(string word) => _ids.TryGetValue(word, out var id)
        ? id : throw new KeyNotFoundException($"'{word}' is not in the vocabulary ({Count} words).");

    internal Dictionary<string, int> Ids => _ids;
}
