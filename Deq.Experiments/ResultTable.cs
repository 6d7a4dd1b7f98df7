using System.Text;

namespace Deq.Experiments;

/// <summary>A Markdown table that sets the paper's numbers beside ours, with notes and the run footer.</summary>
/// <param name="Title">Heading, e.g. "Table 2: Penn Treebank".</param>
/// <param name="Columns">Column headers.</param>
/// <param name="Rows">Cells, one array per row, as already formatted strings.</param>
/// <param name="Notes">Sentences under the table: what differs from the paper and why.</param>
/// <param name="Verdicts">One line per paper claim the table tests, printed last (null: none).</param>
public sealed record ResultTable(string Title, string[] Columns, IReadOnlyList<string[]> Rows, IReadOnlyList<string> Notes,
    IReadOnlyList<ClaimVerdict>? Verdicts = null)
{
    /// <summary>The table as Markdown, ending with <paramref name="run"/>'s footer.</summary>
    public string ToMarkdown(RunInfo run, TimeSpan wall)
    {
        foreach (var row in Rows)
            if (row.Length != Columns.Length)
                throw new ArgumentException($"ResultTable '{Title}': a row has {row.Length} cells for {Columns.Length} columns.");
        var md = new StringBuilder();
        md.AppendLine($"# {Title}").AppendLine();
        md.AppendLine("| " + string.Join(" | ", Columns) + " |");
        md.AppendLine("|" + string.Concat(Columns.Select(_ => "---|")));
        foreach (var row in Rows) md.AppendLine("| " + string.Join(" | ", row) + " |");
        md.AppendLine();
        foreach (var note in Notes) md.AppendLine($"- {note}");
        md.AppendLine($"- {run.Footer(wall)}");
        if (Verdicts is { Count: > 0 } verdicts)
        {
            md.AppendLine().AppendLine("Claims (criteria in `Deq.Experiments.Claims`):").AppendLine();
            foreach (var v in verdicts) md.AppendLine($"- **{v.Claim}**: {v.Evidence}: **{v.OutcomeText}**");
        }
        return md.ToString();
    }

    /// <summary>Writes the Markdown atomically (temporary file, then rename).</summary>
    public void Write(string path, RunInfo run, TimeSpan wall) => AtomicFile.WriteAllText(path, ToMarkdown(run, wall));
}

/// <summary>Writes that never leave a half-written file behind.</summary>
public static class AtomicFile
{
    /// <summary>Writes <paramref name="text"/> to a temporary file beside <paramref name="path"/>, then renames it over.</summary>
    public static void WriteAllText(string path, string text)
    {
        var full = Path.GetFullPath(path);
        Directory.CreateDirectory(Path.GetDirectoryName(full)!);
        var temp = full + ".tmp-" + Guid.NewGuid().ToString("N");
        try
        {
            File.WriteAllText(temp, text);
            File.Move(temp, full, overwrite: true);
        }
        finally
        {
            if (File.Exists(temp)) File.Delete(temp);
        }
    }
}
