using static TorchSharp.torch;

namespace Deq.Solvers;

/// <summary>Why a solve stopped.</summary>
public enum SolverStatus
{
    /// <summary>Every batch element met the tolerance.</summary>
    Converged,
    /// <summary>MaxIter steps ran out first.</summary>
    MaxIterations,
    /// <summary>The residual grew past DivergenceFactor times its lowest value.</summary>
    Diverged,
    /// <summary>f returned NaN or Inf; the lowest finite iterate is returned.</summary>
    NonFinite,
    /// <summary>The solve threw; see the reason. Used where an exception cannot propagate (inside backward).</summary>
    Faulted,
    /// <summary>An evaluation budget set by <see cref="SolverCombinators.WithBudget"/> ran out.</summary>
    BudgetExhausted,
}

/// <summary>
/// The outcome of one solve. Residuals are per batch element; <see cref="AbsTrace"/> and <see cref="RelTrace"/>
/// hold the worst live element per step, <see cref="AbsTracePerElement"/> and <see cref="RelTracePerElement"/> every element.
/// </summary>
/// <param name="Value">The lowest-residual iterate, per batch element, shaped like z0 and detached from autograd.</param>
/// <param name="Status">Why the solve stopped.</param>
/// <param name="Reason">A sentence for logs: what happened, at which step, for which elements.</param>
/// <param name="Steps">Solver steps taken.</param>
/// <param name="Evaluations">Calls of f, line-search trials included.</param>
/// <param name="AbsResidual">Absolute residual of <paramref name="Value"/>, per batch element.</param>
/// <param name="RelResidual">Relative residual of <paramref name="Value"/>, per batch element.</param>
/// <param name="AbsTrace">Worst absolute residual over the batch at each step.</param>
/// <param name="RelTrace">Worst relative residual over the batch at each step.</param>
/// <param name="ConvergedPerElement">Whether each batch element met the tolerance.</param>
/// <param name="Solver">The solver's name, or a combination such as "broyden>anderson".</param>
public sealed record SolverResult(
    Tensor Value,
    SolverStatus Status,
    string Reason,
    int Steps,
    int Evaluations,
    double[] AbsResidual,
    double[] RelResidual,
    IReadOnlyList<double> AbsTrace,
    IReadOnlyList<double> RelTrace,
    bool[] ConvergedPerElement,
    string Solver)
{
    /// <summary>Steps each batch element took: to meet the tolerance, to fail, or all of them.</summary>
    public int[] StepsPerElement { get; init; } = [];

    /// <summary>The 1-based step whose iterate <see cref="Value"/> holds, per batch element (0: z0 itself, f(z0) was not finite).</summary>
    public int[] BestStepPerElement { get; init; } = [];

    /// <summary>Why each batch element stopped: Converged, NonFinite or Diverged (it then keeps its best iterate), else the solve's status.</summary>
    public SolverStatus[] StatusPerElement { get; init; } = [];

    /// <summary>Absolute residual of every batch element at every step, [batch, steps] (NaN where f was not finite).</summary>
    public double[,] AbsTracePerElement { get; init; } = new double[0, 0];

    /// <summary>Relative residual of every batch element at every step, [batch, steps].</summary>
    public double[,] RelTracePerElement { get; init; } = new double[0, 0];

    /// <summary>True when every batch element met the tolerance.</summary>
    public bool Converged => Status == SolverStatus.Converged;

    /// <summary>Worst absolute residual over the batch (the lowest reached, since Value is the best iterate).</summary>
    public double AbsLowest => AbsResidual.Length == 0 ? 0 : AbsResidual.Max();

    /// <summary>Worst relative residual over the batch.</summary>
    public double RelLowest => RelResidual.Length == 0 ? 0 : RelResidual.Max();

    /// <summary>The residual trace in the stop mode's measure.</summary>
    public IReadOnlyList<double> Trace(StopMode mode) => mode == StopMode.Absolute ? AbsTrace : RelTrace;

    /// <summary>A result for a solve that threw <paramref name="error"/>, with an empty value and no residuals.</summary>
    public static SolverResult Faulted(Exception error, long batch) =>
        new(TorchSharp.torch.empty(0), SolverStatus.Faulted, $"{error.GetType().Name}: {error.Message}", 0, 0,
            Enumerable.Repeat(double.NaN, (int)batch).ToArray(), Enumerable.Repeat(double.NaN, (int)batch).ToArray(),
            [], [], new bool[batch], "faulted");

    /// <inheritdoc />
    public override string ToString() =>
        $"{Solver}: {Status} after {Steps} steps ({Evaluations} f evals), abs {AbsLowest:E2}, rel {RelLowest:E2}. {Reason}";
}
