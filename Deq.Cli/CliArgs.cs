using System.Globalization;

namespace Deq.Cli;

/// <summary>
/// `--name value` options over defaults, plus bare flags (`--resume`, or `--resume true|false`); unknown names
/// and unparsable values are errors that name them.
/// </summary>
internal sealed class CliArgs(Dictionary<string, string> values, HashSet<string> given)
{
    /// <param name="args">The command's arguments.</param>
    /// <param name="defaults">Every option's name and default value.</param>
    /// <param name="flags">Options that may stand without a value (then they mean <paramref name="flagValues"/>' entry, else "true").</param>
    /// <param name="flagValues">The value a bare flag stands for, where it is not "true".</param>
    public static CliArgs Parse(string[] args, Dictionary<string, string> defaults, IEnumerable<string>? flags = null,
                                IReadOnlyDictionary<string, string>? flagValues = null)
    {
        var bare = new HashSet<string>(flags ?? []);
        var values = new Dictionary<string, string>(defaults);
        var given = new HashSet<string>();
        for (int i = 0; i < args.Length; i++)
        {
            var a = args[i];
            if (!a.StartsWith("--"))
                throw new ArgumentException($"unexpected argument '{a}'; options look like --name value (see --help)");
            var name = a[2..];
            if (!defaults.ContainsKey(name))
                throw new ArgumentException($"unknown option --{name}; known: {string.Join(", ", defaults.Keys.Select(k => "--" + k))}");
            if (!given.Add(name))
                throw new ArgumentException($"option --{name} is given twice");
            bool valueFollows = i + 1 < args.Length && !args[i + 1].StartsWith("--");
            if (bare.Contains(name) && !valueFollows)
                values[name] = flagValues?.GetValueOrDefault(name) ?? "true";
            else if (!valueFollows)
                throw new ArgumentException($"option --{name} needs a value");
            else values[name] = args[++i];
        }
        return new CliArgs(values, given);
    }

    /// <summary>True when the option was on the command line (not just its default).</summary>
    public bool Given(string name) => given.Contains(name);

    public string Text(string name) => values[name];

    public int Int(string name) => int.TryParse(values[name], NumberStyles.Integer, CultureInfo.InvariantCulture, out var v)
        ? v : throw new ArgumentException($"--{name} must be an integer, got '{values[name]}'");

    public double Double(string name) => double.TryParse(values[name], NumberStyles.Float, CultureInfo.InvariantCulture, out var v)
        ? v : throw new ArgumentException($"--{name} must be a number, got '{values[name]}'");

    public bool Bool(string name) => bool.TryParse(values[name], out var v)
        ? v : throw new ArgumentException($"--{name} must be true or false, got '{values[name]}'");

    /// <summary>A positive integer option.</summary>
    public int Positive(string name) => Int(name) > 0 ? Int(name) : throw new ArgumentException($"--{name} must be a positive integer, got {values[name]}");

    /// <summary>A positive finite number.</summary>
    public double PositiveNumber(string name) => Double(name) is var v && v > 0 && double.IsFinite(v)
        ? v : throw new ArgumentException($"--{name} must be a positive finite number, got {values[name]}");

    /// <summary>One of <paramref name="choices"/>.</summary>
    public string Choice(string name, params string[] choices) => choices.Contains(values[name])
        ? values[name] : throw new ArgumentException($"--{name} must be one of {string.Join(", ", choices)}, got '{values[name]}'");
}
