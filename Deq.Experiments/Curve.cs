namespace Deq.Experiments;

/// <summary>One line of a chart, as an experiment returns it (notebooks turn it into a Deq.Charts series).</summary>
/// <param name="Name">Legend entry.</param>
/// <param name="X">X values.</param>
/// <param name="Y">Y values, as many as X.</param>
public sealed record Curve(string Name, double[] X, double[] Y)
{
    /// <summary>Whether every Y is finite.</summary>
    public bool AllFinite => Y.All(double.IsFinite);
}
