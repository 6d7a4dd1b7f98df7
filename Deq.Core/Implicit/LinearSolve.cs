using Deq.Solvers;
using TorchSharp;
using static TorchSharp.torch;

namespace Deq.Implicit;

/// <summary>
/// Solves the adjoint system g = J^T g + rhs, given <paramref name="vjp"/>: g ↦ J^T g (a vector-Jacobian
/// product through the one graph of f at z*). Returns g as the result's value, with the solve's statistics;
/// like every solver it returns its best iterate when it does not converge.
/// </summary>
public delegate SolverResult LinearSolver(Func<Tensor, Tensor> vjp, Tensor rhs);

/// <summary>Linear solves for the adjoint: a fixed-point adapter over any <see cref="Solver"/>, and GMRES.</summary>
public static class LinearSolve
{
    /// <summary>What <paramref name="solve"/> is, or "custom linear solve".</summary>
    public static string Describe(this LinearSolver solve) => SolverDescriptions.Of(solve, "custom linear solve");

    /// <summary>The adjoint as the fixed point of g ↦ J^T g + rhs, found by <paramref name="solver"/> from g = 0.</summary>
    public static LinearSolver FixedPoint(Solver solver) => SolverDescriptions.Register<LinearSolver>((vjp, rhs) =>
    {
        using var scope = torch.NewDisposeScope();
        var r = solver(g => vjp(g).add_(rhs), InitialGuess.ZerosLike(rhs));
        r.Value.MoveToOuterDisposeScope();
        return r;
    }, $"fixed point by {solver.Describe()}");

    /// <summary>
    /// Restarted GMRES on (I - J^T) g = rhs, per batch element (as the solvers treat elements). Each
    /// iteration costs one vector-Jacobian product and keeps <paramref name="restart"/> + 1 Krylov vectors;
    /// it converges even where the fixed-point iteration diverges (spectral radius of J above 1).
    /// </summary>
    /// <param name="options">MaxIter counts vector-Jacobian products; Tol applies to ||(I - J^T) g - rhs|| (absolute) or that over ||rhs|| (relative).</param>
    /// <param name="restart">Krylov vectors per cycle.</param>
    public static LinearSolver Gmres(SolverOptions? options = null, int restart = 10)
    {
        var o = (options ?? new SolverOptions(MaxIter: 40, Tol: 1e-5)).Validate();
        if (restart < 1) throw new ArgumentOutOfRangeException(nameof(restart), restart, "LinearSolve.Gmres: restart must be at least 1.");
        return SolverDescriptions.Register<LinearSolver>((vjp, rhs) => Implicit.Gmres.Solve(vjp, rhs, o, restart),
            $"gmres(restart={restart}, {SolverDescriptions.Limits(o)})");
    }
}
