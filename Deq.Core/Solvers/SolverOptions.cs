namespace Deq.Solvers;

/// <summary>Which residual the tolerance applies to.</summary>
public enum StopMode
{
    /// <summary>||f(z) - z|| &lt;= Tol.</summary>
    Absolute,
    /// <summary>||f(z) - z|| / ||f(z)|| &lt;= Tol (the paper's default).</summary>
    Relative,
}

/// <summary>The vector norm residuals are measured in, per batch element.</summary>
public enum ResidualNorm
{
    /// <summary>Euclidean norm.</summary>
    L2,
    /// <summary>Largest absolute entry.</summary>
    Max,
}

/// <summary>Whose residual the tolerance applies to.</summary>
public enum StopScope
{
    /// <summary>Every batch element's own residual must meet the tolerance (the default).</summary>
    EveryElement,
    /// <summary>
    /// The batch's combined residual: ||f(z) - z|| / ||f(z)|| over the whole batch (L2: the Frobenius norms;
    /// Max: the largest entries), as the reference DEQ implementation stops. Elements may be left above Tol (their ConvergedPerElement is false).
    /// </summary>
    Batch,
}

/// <summary>Options every solver shares. Immutable; construct with named arguments.</summary>
/// <param name="MaxIter">Most solver steps (the bound on iterations, not on f evaluations).</param>
/// <param name="Tol">Stop once every batch element's residual is at or below this.</param>
/// <param name="Stop">Absolute or relative residual.</param>
/// <param name="Norm">Norm of the residual, per batch element.</param>
/// <param name="DivergenceFactor">A batch element diverged when its residual exceeds this multiple of its lowest so far.</param>
/// <param name="MaxGrowth">
/// A batch element ran away (diverged) when ||f(z)|| exceeds this multiple of its start, max(||z0||, ||f(z0)||).
/// The relative residual's denominator counts only up to 1/sqrt(Tol) times the start, so an iterate that
/// escapes to infinity cannot meet a relative tolerance by making ||f(z)|| large.
/// </param>
/// <param name="CheckEvery">Test for the stop (one read of the host), and update the best iterate, every this many steps (and at step 1 and the last); 1: every step.</param>
/// <param name="Over">Whether every element must meet the tolerance, or the batch's combined residual.</param>
public sealed record SolverOptions(
    int MaxIter = 50,
    double Tol = 1e-6,
    StopMode Stop = StopMode.Relative,
    ResidualNorm Norm = ResidualNorm.L2,
    double DivergenceFactor = 1e4,
    double MaxGrowth = 1e4,
    int CheckEvery = 1,
    StopScope Over = StopScope.EveryElement)
{
    /// <summary>50 iterations, relative tolerance 1e-6, L2 norm.</summary>
    public static SolverOptions Default { get; } = new();

    /// <summary>Throws an <see cref="ArgumentOutOfRangeException"/> naming the first bad option.</summary>
    public SolverOptions Validate()
    {
        if (MaxIter <= 0)
            throw new ArgumentOutOfRangeException(nameof(MaxIter), MaxIter, "SolverOptions.MaxIter must be positive.");
        if (!(Tol > 0) || double.IsInfinity(Tol))
            throw new ArgumentOutOfRangeException(nameof(Tol), Tol, "SolverOptions.Tol must be a positive finite number.");
        if (!(DivergenceFactor > 1))
            throw new ArgumentOutOfRangeException(nameof(DivergenceFactor), DivergenceFactor, "SolverOptions.DivergenceFactor must exceed 1.");
        if (!(MaxGrowth > 1))
            throw new ArgumentOutOfRangeException(nameof(MaxGrowth), MaxGrowth, "SolverOptions.MaxGrowth must exceed 1.");
        if (CheckEvery < 1)
            throw new ArgumentOutOfRangeException(nameof(CheckEvery), CheckEvery, "SolverOptions.CheckEvery must be at least 1.");
        return this;
    }
}
