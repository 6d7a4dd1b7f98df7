using System.Text;

namespace Deq.Training;

/// <summary>A run's configuration as sorted key = value text; a checkpoint resumes only under an equal one.</summary>
public static class Fingerprint
{
    /// <summary>The union of several field sets; a key given twice with different values is an error.</summary>
    public static IReadOnlyDictionary<string, string> Merge(params IReadOnlyDictionary<string, string>?[] parts)
    {
        var all = new SortedDictionary<string, string>(StringComparer.Ordinal);
        foreach (var part in parts)
            foreach (var (k, v) in part ?? new Dictionary<string, string>())
                if (all.TryGetValue(k, out var old) && old != v)
                    throw new ArgumentException($"fingerprint field '{k}' given twice: '{old}' and '{v}'.");
                else all[k] = v;
        return all;
    }

    /// <summary>
    /// The fields that differ, as "field: checkpoint A, now B". A value printed as a record ("Type { X = 1, Y = 2 }")
    /// is compared member by member, so only the members that differ are shown ("model.config.Y: ...").
    /// </summary>
    public static IReadOnlyList<string> Diff(IReadOnlyDictionary<string, string> saved, IReadOnlyDictionary<string, string> current) =>
        saved.Keys.Union(current.Keys).Order(StringComparer.Ordinal)
            .SelectMany(k => Differences(k, saved.GetValueOrDefault(k), current.GetValueOrDefault(k)))
            .ToList();

    static IEnumerable<string> Differences(string key, string? a, string? b)
    {
        if (a == b) yield break;
        if (a is not null && b is not null && Members(a) is { } ma && Members(b) is { } mb)
        {
            foreach (var name in ma.Keys.Union(mb.Keys))
                foreach (var d in Differences($"{key}.{name}", ma.GetValueOrDefault(name), mb.GetValueOrDefault(name)))
                    yield return d;
            yield break;
        }
        yield return $"{key}: checkpoint {a ?? "(absent)"}, now {b ?? "(absent)"}";
    }

    /// <summary>The top-level members of a record's printed form "Type { A = 1, B = X { ... } }", or null.</summary>
    static Dictionary<string, string>? Members(string text)
    {
        int open = text.IndexOf(" { ", StringComparison.Ordinal);
        if (open < 0 || !text.EndsWith(" }", StringComparison.Ordinal) || text.AsSpan(0, open).Contains(' ')) return null;
        var body = text[(open + 3)..^2];
        var members = new Dictionary<string, string>(StringComparer.Ordinal);
        int depth = 0, start = 0;
        for (int i = 0; i <= body.Length; i++)
        {
            if (i < body.Length && body[i] is '{' or '[' or '(') depth++;
            else if (i < body.Length && body[i] is '}' or ']' or ')') depth--;
            else if (i == body.Length || depth == 0 && body[i] == ',' && i + 1 < body.Length && body[i + 1] == ' ')
            {
                var part = body[start..i];
                int eq = part.IndexOf(" = ", StringComparison.Ordinal);
                if (eq < 0) return null;
                members[part[..eq]] = part[(eq + 3)..];
                start = i + 2;
            }
        }
        return members;
    }

    /// <summary>UTF-8 "key=value" lines.</summary>
    public static byte[] ToBytes(IReadOnlyDictionary<string, string> fields) =>
        Encoding.UTF8.GetBytes(string.Concat(fields.Select(kv => $"{kv.Key}={kv.Value.Replace('\n', ' ')}\n")));

    /// <summary>Parses <see cref="ToBytes"/>.</summary>
    public static IReadOnlyDictionary<string, string> FromBytes(byte[] bytes) =>
        Encoding.UTF8.GetString(bytes).Split('\n', StringSplitOptions.RemoveEmptyEntries)
            .Select(l => l.Split('=', 2))
            .ToDictionary(p => p[0], p => p.Length > 1 ? p[1] : "", StringComparer.Ordinal);
}
