using TorchSharp;
using static TorchSharp.torch;

namespace Deq.Solvers;

/// <summary>One evaluation of f as seen by <see cref="SolverCombinators.Observed"/>.</summary>
/// <param name="Evaluation">1-based count of f calls in this solve.</param>
/// <param name="AbsResidual">||f(z) - z|| per batch element (L2).</param>
/// <param name="RelResidual">||f(z) - z|| / ||f(z)|| per batch element.</param>
public sealed record SolverStep(int Evaluation, double[] AbsResidual, double[] RelResidual);

/// <summary>Functions from solvers to solvers.</summary>
public static class SolverCombinators
{
    /// <summary>
    /// Runs <paramref name="first"/>; if it does not converge, runs <paramref name="fallback"/> from
    /// the first's best iterate. Steps, evaluations and traces add up across both.
    /// </summary>
    public static Solver OrElse(this Solver first, Solver fallback) => SolverDescriptions.Register<Solver>((f, z0) =>
    {
        var a = first(f, z0);
        if (a.Converged || a.Status == SolverStatus.BudgetExhausted) return a;
        var b = fallback(f, a.Value);
        a.Value.Dispose();
        return b with
        {
            Steps = a.Steps + b.Steps,
            Evaluations = a.Evaluations + b.Evaluations,
            AbsTrace = [.. a.AbsTrace, .. b.AbsTrace],
            RelTrace = [.. a.RelTrace, .. b.RelTrace],
            Reason = $"{a.Solver}: {a.Reason}; then {b.Solver}: {b.Reason}",
            Solver = $"{a.Solver}>{b.Solver}",
        };
    }, $"{first.Describe()} or else {fallback.Describe()}");

    /// <summary>
    /// Solves the damped map z + beta (f(z) - z), which has the same fixed points as f but contracts
    /// where f oscillates. Residuals and the tolerance then refer to the damped map (beta times f's own).
    /// </summary>
    public static Solver Damped(this Solver inner, double beta)
    {
        if (!(beta > 0 && beta <= 1))
            throw new ArgumentOutOfRangeException(nameof(beta), beta, "Damped: beta must lie in (0, 1].");
        return SolverDescriptions.Register<Solver>((f, z0) =>
        {
            var r = inner(z => z.lerp(f(z), beta), z0);
            return r with { Solver = $"damped({beta})·{r.Solver}" };
        }, $"damped({beta}, {inner.Describe()})");
    }

    /// <summary>Calls <paramref name="observer"/> after every evaluation of f with the per-element residuals there.</summary>
    public static Solver Observed(this Solver inner, Action<SolverStep> observer) => SolverDescriptions.Register<Solver>((f, z0) =>
    {
        int count = 0;
        return inner(z =>
        {
            var fz = f(z);
            if (!fz.shape.SequenceEqual(z.shape)) return fz; // the solver reports the shape error
            var (abs, rel) = Residuals.PerElement(z, fz);
            observer(new SolverStep(++count, abs, rel));
            return fz;
        }, z0);
    }, inner.Describe());

    /// <summary>
    /// Caps the f evaluations of <paramref name="inner"/> (all of its parts, fallbacks included) at
    /// <paramref name="maxEvaluations"/>. When the budget runs out the solve stops with
    /// <see cref="SolverStatus.BudgetExhausted"/> and returns its best iterate so far.
    /// </summary>
    public static Solver WithBudget(this Solver inner, int maxEvaluations)
    {
        if (maxEvaluations < 1)
            throw new ArgumentOutOfRangeException(nameof(maxEvaluations), maxEvaluations, "WithBudget: maxEvaluations must be at least 1.");
        return SolverDescriptions.Register<Solver>((f, z0) =>
        {
            var previous = EvaluationBudget.Current;
            EvaluationBudget.Current = new EvaluationBudget(maxEvaluations, previous);
            try
            {
                return inner(f, z0);
            }
            finally
            {
                EvaluationBudget.Current = previous;
            }
        }, $"{inner.Describe()} within {maxEvaluations} f evals");
    }
}

/// <summary>The f-evaluation allowance that <see cref="SolverCombinators.WithBudget"/> sets for the solves inside it.</summary>
internal sealed class EvaluationBudget(int limit, EvaluationBudget? outer)
{
    [ThreadStatic] static EvaluationBudget? _current;
    int _used;

    public static EvaluationBudget? Current { get => _current; set => _current = value; }

    public int Limit => limit;

    /// <summary>Charges one evaluation here and in every enclosing budget; false when any is spent.</summary>
    public bool TryCharge()
    {
        if (_used >= limit || (outer is not null && !outer.TryCharge())) return false;
        _used++;
        return true;
    }
}

/// <summary>Thrown inside a solve when its evaluation budget is spent; the solve turns it into a result.</summary>
internal sealed class EvaluationBudgetExhausted(int limit) : Exception($"evaluation budget of {limit} f calls spent")
{
    public int Limit => limit;
}
