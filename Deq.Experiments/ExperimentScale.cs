namespace Deq.Experiments;

/// <summary>How big an experiment runs. Every notebook has all four.</summary>
public enum ExperimentScale
{
    /// <summary>Seconds per notebook: CI's check that every cell runs. Numbers are not meaningful.</summary>
    Smoke,
    /// <summary>The default: a few minutes per notebook on a 2-core CPU.</summary>
    Small,
    /// <summary>A larger CPU run (tens of minutes to hours).</summary>
    Large,
    /// <summary>The paper's configurations; needs a GPU.</summary>
    Paper,
}

/// <summary>Reading the scale from the environment, as the notebook runner passes it.</summary>
public static class ExperimentScales
{
    /// <summary>The variable the runner sets: smoke, small, large or paper.</summary>
    public const string Variable = "DEQ_SCALE";

    /// <summary>Parses a scale name (case-insensitive); a clear error names the valid ones.</summary>
    public static ExperimentScale Parse(string name) =>
        Enum.TryParse<ExperimentScale>(name, ignoreCase: true, out var scale) && Enum.IsDefined(scale)
            ? scale
            : throw new ArgumentException($"Unknown scale '{name}'; use one of: {string.Join(", ", Enum.GetNames<ExperimentScale>().Select(n => n.ToLowerInvariant()))}.");

    /// <summary>The scale in <see cref="Variable"/>, or <see cref="ExperimentScale.Small"/> when unset.</summary>
    public static ExperimentScale FromEnvironment() =>
        Environment.GetEnvironmentVariable(Variable) is { Length: > 0 } s ? Parse(s) : ExperimentScale.Small;
}
