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

    /// <summary>The fields that differ, as "field: checkpoint A, now B".</summary>
    public static IReadOnlyList<string> Diff(IReadOnlyDictionary<string, string> saved, IReadOnlyDictionary<string, string> current) =>
        saved.Keys.Union(current.Keys).Order(StringComparer.Ordinal)
            .Where(k => saved.GetValueOrDefault(k) != current.GetValueOrDefault(k))
            .Select(k => $"{k}: checkpoint {saved.GetValueOrDefault(k) ?? "(absent)"}, now {current.GetValueOrDefault(k) ?? "(absent)"}")
            .ToList();

    /// <summary>UTF-8 "key=value" lines.</summary>
    public static byte[] ToBytes(IReadOnlyDictionary<string, string> fields) =>
        Encoding.UTF8.GetBytes(string.Concat(fields.Select(kv => $"{kv.Key}={kv.Value.Replace('\n', ' ')}\n")));

    /// <summary>Parses <see cref="ToBytes"/>.</summary>
    public static IReadOnlyDictionary<string, string> FromBytes(byte[] bytes) =>
        Encoding.UTF8.GetString(bytes).Split('\n', StringSplitOptions.RemoveEmptyEntries)
            .Select(l => l.Split('=', 2))
            .ToDictionary(p => p[0], p => p.Length > 1 ? p[1] : "", StringComparer.Ordinal);
}
