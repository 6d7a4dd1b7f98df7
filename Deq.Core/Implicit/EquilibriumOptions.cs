using Deq.Solvers;

namespace Deq.Implicit;

/// <summary>How an equilibrium is found and differentiated. Null members take the memory-lean defaults below.</summary>
/// <param name="Forward">Solver for z* = f(z*). Default: <see cref="LeanForward"/> (plain iteration, Anderson m = 5 as its fallback, 30 steps each, relative tolerance 1e-4).</param>
/// <param name="Adjoint">How gradients flow. Default: <see cref="Adjoint.Implicit(LinearSolver?)"/> with <see cref="LeanAdjointSolve"/>
/// (plain iteration on the adjoint, Anderson m = 3 where that does not converge).</param>
/// <param name="OnBackward">Receives the adjoint solve's statistics once backward has run (implicit adjoints only).</param>
public sealed record EquilibriumOptions(Solver? Forward = null, Adjoint? Adjoint = null, Action<BackwardReport>? OnBackward = null)
{
    /// <summary>The defaults.</summary>
    public static EquilibriumOptions Default { get; } = new();

    /// <summary>
    /// The training default forward solver: plain iteration, which keeps no history, with Anderson (m = 5) taking
    /// over from its best iterate where it does not converge, each with <paramref name="maxIter"/> steps. Anderson
    /// alone trained worse here: on Table 2's small DEQ-TrellisNet (PTB, 10 iterations) it reached test perplexity
    /// 2253 where plain iteration reached 749 (Broyden m = 30: 894), so it is the fallback, not the first try.
    /// </summary>
    public static Solver LeanForward(int maxIter = 30, double tol = 1e-4)
    {
        var o = new SolverOptions(MaxIter: maxIter, Tol: tol);
        return ForwardIteration.Create(o).OrElse(Anderson.Create(o, new AndersonOptions(Memory: 5)));
    }

    /// <summary>
    /// The training default adjoint solve: plain iteration on g = J^T g + dL/dz*, which keeps no history, so that
    /// backward holds one graph of f plus a few copies of z; where it does not converge (spectral radius of J near
    /// or above 1) Anderson (m = 3) takes over from its best iterate, each with <paramref name="maxIter"/> steps.
    /// </summary>
    public static LinearSolver LeanAdjointSolve(int maxIter = 40, double tol = 1e-5)
    {
        var o = new SolverOptions(MaxIter: maxIter, Tol: tol);
        return LinearSolve.FixedPoint(ForwardIteration.Create(o).OrElse(Anderson.Create(o, new AndersonOptions(Memory: 3))));
    }

    static readonly Solver DefaultForward = LeanForward();
    static readonly Adjoint DefaultAdjoint = Implicit.Adjoint.Implicit();

    /// <summary>The forward solver used: <see cref="Forward"/> or the default.</summary>
    public Solver ForwardSolver => Forward ?? DefaultForward;

    /// <summary>The adjoint used: <see cref="Adjoint"/> or the default.</summary>
    public Adjoint AdjointUsed => Adjoint ?? DefaultAdjoint;
}
