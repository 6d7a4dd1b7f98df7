using System.Globalization;
using System.Runtime.CompilerServices;

namespace Deq.Solvers;

/// <summary>
/// Readable descriptions of solver values ("anderson(m=5, 30 iters, rel 1e-4)"), for tables, logs and
/// configuration fingerprints: a solver is a plain delegate, so factories and combinators register theirs here.
/// </summary>
public static class SolverDescriptions
{
    static readonly ConditionalWeakTable<Delegate, string> Table = new();

    /// <summary>What <paramref name="solver"/> is, or "custom solver" for one nobody named.</summary>
    public static string Describe(this Solver solver) => Of(solver, "custom solver");

    /// <summary><paramref name="solver"/> with the description <paramref name="description"/>.</summary>
    public static Solver Named(this Solver solver, string description) => Register(solver, description);

    internal static T Register<T>(T value, string description) where T : Delegate
    {
        Table.AddOrUpdate(value, description);
        return value;
    }

    internal static string Of(Delegate value, string fallback) => Table.TryGetValue(value, out var d) ? d : fallback;

    /// <summary>"30 iters, rel 1e-4".</summary>
    internal static string Limits(SolverOptions o) =>
        string.Create(CultureInfo.InvariantCulture, $"{o.MaxIter} iters, {(o.Stop == StopMode.Relative ? "rel" : "abs")} {o.Tol:0.#####E+0}");
}
