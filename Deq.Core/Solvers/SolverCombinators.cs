using TorchSharp;
using static TorchSharp.torch;

namespace Deq.Solvers;

/// <summary>One solver step as seen by <see cref="SolverCombinators.Observed"/>.</summary>
/// <param name="Step">1-based count of steps in the observed solve (across the parts of a fallback chain).</param>
/// <param name="Evaluation">Calls of f so far in the solver that took the step.</param>
/// <param name="Z">The iterate, shaped like z0; valid only during the callback (clone it to keep it).</param>
/// <param name="Fz">f at the iterate, likewise.</param>
/// <param name="AbsResidual">||f(z) - z|| per batch element, in the solver's norm.</param>
/// <param name="RelResidual">||f(z) - z|| / ||f(z)|| per batch element, in the solver's norm.</param>
/// <param name="Norm">The norm the residuals are measured in.</param>
public sealed record SolverStep(int Step, int Evaluation, Tensor Z, Tensor Fz, double[] AbsResidual, double[] RelResidual, ResidualNorm Norm)
{
    internal static SolverStep At(SolveContext ctx, Iterate it)
    {
        // As the CPU ledger reads them where it can, so that the observer sees the ledger's numbers.
        var (absHost, relHost) = Residuals.FromMemory(it.Z, it.Fz, ctx.Options.Norm) is { } read
            ? (read.Abs, read.Abs.Zip(read.FzNorm, (a, n) => a / (n + 1e-12)).ToArray())
            : Residuals.PerElement(it.Z, it.Fz, ctx.Options.Norm);
        // The views belong to the step's scope, which ends after the callback.
        return new SolverStep(ctx.Step, ctx.Evaluations, it.Z.reshape(ctx.Shape), it.Fz.reshape(ctx.Shape), absHost, relHost, ctx.Options.Norm);
    }
}

/// <summary>The observer of the solve running on this thread, set by <see cref="SolverCombinators.Observed"/>.</summary>
internal static class SolveObserver
{
    [ThreadStatic] static Action<SolverStep>? _current;

    public static Action<SolverStep>? Current { get => _current; set => _current = value; }

    /// <summary>Takes the observer for one solve, so that solves nested inside its f do not report to it.</summary>
    public static Action<SolverStep>? Take()
    {
        var o = _current;
        _current = null;
        return o;
    }

    public static void Restore(Action<SolverStep>? observer) => _current = observer;
}

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
        var b = SolveLoop.RunHandingOver(fallback, f, a.Value);   // the fallback may free a's value once it has started
        a.Value.Dispose();
        return b with
        {
            Steps = a.Steps + b.Steps,
            Evaluations = a.Evaluations + b.Evaluations,
            AbsTrace = [.. a.AbsTrace, .. b.AbsTrace],
            RelTrace = [.. a.RelTrace, .. b.RelTrace],
            AbsTracePerElement = Concat(a.AbsTracePerElement, b.AbsTracePerElement),
            RelTracePerElement = Concat(a.RelTracePerElement, b.RelTracePerElement),
            StepsPerElement = [.. b.StepsPerElement.Select(s => a.Steps + s)],
            BestStepPerElement = [.. b.BestStepPerElement.Select(s => a.Steps + s)],
            Reason = $"{a.Solver}: {a.Reason}; then {b.Solver}: {b.Reason}",
            Solver = $"{a.Solver}>{b.Solver}",
        };
    }, $"{first.Describe()} or else {fallback.Describe()}");

    // [batch, s1] and [batch, s2] side by side.
    static double[,] Concat(double[,] a, double[,] b)
    {
        if (a.GetLength(0) != b.GetLength(0)) return b;
        int n = a.GetLength(0), s1 = a.GetLength(1), s2 = b.GetLength(1);
        var c = new double[n, s1 + s2];
        for (int i = 0; i < n; i++)
        {
            for (int t = 0; t < s1; t++) c[i, t] = a[i, t];
            for (int t = 0; t < s2; t++) c[i, s1 + t] = b[i, t];
        }
        return c;
    }

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

    /// <summary>
    /// Calls <paramref name="observer"/> after every step of <paramref name="inner"/> (each part of a
    /// fallback chain) with the step number, z, f(z) and the per-element residuals in the solver's norm.
    /// Observing copies the residuals to the host each step.
    /// </summary>
    public static Solver Observed(this Solver inner, Action<SolverStep> observer) => SolverDescriptions.Register<Solver>((f, z0) =>
    {
        int count = 0;
        var previous = SolveObserver.Current;
        SolveObserver.Current = step =>
        {
            var numbered = step with { Step = ++count };
            observer(numbered);
            previous?.Invoke(numbered);
        };
        try
        {
            return inner(f, z0);
        }
        finally
        {
            SolveObserver.Current = previous;
        }
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
