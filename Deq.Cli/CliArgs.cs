using System.Globalization;

namespace Deq.Cli;

/// <summary>`--name value` options over defaults; unknown names and unparsable values are errors that name them.</summary>
internal sealed class CliArgs(Dictionary<string, string> values)
{
    public static CliArgs Parse(string[] args, Dictionary<string, string> defaults)
    {
        var values = new Dictionary<string, string>(defaults);
        for (int i = 0; i < args.Length; i++)
        {
            var a = args[i];
            if (!a.StartsWith("--"))
                throw new ArgumentException($"unexpected argument '{a}'; options look like --name value");
            var name = a[2..];
            if (!defaults.ContainsKey(name))
                throw new ArgumentException($"unknown option --{name}; known: {string.Join(", ", defaults.Keys.Select(k => "--" + k))}");
            if (i + 1 >= args.Length)
                throw new ArgumentException($"option --{name} needs a value");
            values[name] = args[++i];
        }
        return new CliArgs(values);
    }

    public string Text(string name) => values[name];

    public int Int(string name) => int.TryParse(values[name], NumberStyles.Integer, CultureInfo.InvariantCulture, out var v)
        ? v : throw new ArgumentException($"--{name} must be an integer, got '{values[name]}'");

    public double Double(string name) => double.TryParse(values[name], NumberStyles.Float, CultureInfo.InvariantCulture, out var v)
        ? v : throw new ArgumentException($"--{name} must be a number, got '{values[name]}'");
}
