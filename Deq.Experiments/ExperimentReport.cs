using System.Text.Json;
using System.Text.Json.Serialization;

namespace Deq.Experiments;

/// <summary>One row of a table or figure, machine-readable (null: not applicable or not measured).</summary>
/// <param name="Model">Our row label.</param>
/// <param name="Parameters">Trainable parameters.</param>
/// <param name="Metric">What <paramref name="Value"/> is: "test perplexity", "test loss", "training ratio", ...</param>
/// <param name="Value">The figure.</param>
/// <param name="TrainingMemoryBytes">Peak training memory at the paper's setting (sequence 150, batch 15), bytes.</param>
/// <param name="Steps">Training steps.</param>
/// <param name="WallSeconds">Training (and evaluation) wall time of this row.</param>
/// <param name="PaperModel">The paper's row this one stands beside.</param>
/// <param name="PaperValue">The paper's figure for it.</param>
/// <param name="PaperMemoryGB">The paper's training memory, GB.</param>
/// <param name="Extra">Further named figures (accuracy, solver steps, ...).</param>
public sealed record ResultRow(string Model, long? Parameters, string Metric, double? Value, long? TrainingMemoryBytes = null,
    int? Steps = null, double? WallSeconds = null, string? PaperModel = null, double? PaperValue = null, double? PaperMemoryGB = null,
    IReadOnlyDictionary<string, double>? Extra = null);

/// <summary>
/// What a table or figure writes beside its Markdown/HTML: paper-figures/&lt;scale&gt;/&lt;name&gt;.json with its rows, its
/// claim verdicts, and where it ran (scale, device, machine, commit, date, wall time).
/// </summary>
/// <param name="Name">File stem, e.g. "table2-ptb".</param>
/// <param name="Title">The table's title.</param>
/// <param name="Scale">smoke, small, large or paper.</param>
/// <param name="Device">The torch device.</param>
/// <param name="Machine">CPU model and cores.</param>
/// <param name="Commit">Short git commit.</param>
/// <param name="Date">UTC date of the run.</param>
/// <param name="WallSeconds">Wall time of the whole experiment.</param>
/// <param name="Rows">Ours, with the paper's figures beside where it has them.</param>
/// <param name="Verdicts">One per claim the table tests.</param>
/// <param name="Notes">The table's notes.</param>
public sealed record ExperimentReport(string Name, string Title, string Scale, string Device, string Machine, string Commit, DateTime Date,
    double WallSeconds, IReadOnlyList<ResultRow> Rows, IReadOnlyList<ClaimVerdict> Verdicts, IReadOnlyList<string> Notes)
{
    static readonly JsonSerializerOptions Options = new()
    {
        WriteIndented = true,
        PropertyNamingPolicy = JsonNamingPolicy.CamelCase,
        DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull,
        NumberHandling = JsonNumberHandling.AllowNamedFloatingPointLiterals,
    };

    /// <summary>The report of <paramref name="table"/> run as <paramref name="run"/> says.</summary>
    public static ExperimentReport Of(string name, ResultTable table, RunInfo run, TimeSpan wall, IReadOnlyList<ResultRow> rows) =>
        new(name, table.Title, run.Scale.ToString().ToLowerInvariant(), run.Device, run.Machine, run.Commit, run.Date, wall.TotalSeconds,
            rows, table.Verdicts ?? [], table.Notes);

    /// <summary>The report as indented JSON (camelCase; outcomes as names).</summary>
    public string ToJson() => JsonSerializer.Serialize(this, Options);

    /// <summary>Parses what <see cref="ToJson"/> wrote.</summary>
    public static ExperimentReport FromJson(string json) =>
        JsonSerializer.Deserialize<ExperimentReport>(json, Options) ?? throw new InvalidOperationException("experiment report: empty JSON");

    /// <summary>Writes <see cref="ToJson"/> to <paramref name="path"/> atomically.</summary>
    public void Write(string path) => AtomicFile.WriteAllText(path, ToJson());
}
