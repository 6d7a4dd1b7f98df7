using Deq.Solvers;

namespace Deq.Implicit;

/// <summary>How an equilibrium is found and differentiated. Null members take the memory-lean defaults below.</summary>
/// <param name="Forward">Solver for z* = f(z*). Default: <see cref="LeanForward"/> (plain iteration, Anderson m = 2 as its fallback, 30 steps each, relative tolerance 1e-4).</param>
/// <param name="Adjoint">How gradients flow. Default: <see cref="Adjoint.Implicit(LinearSolver?)"/> with <see cref="LeanAdjointSolve"/>
/// (plain iteration on the adjoint, damped iteration where that does not converge: no history).</param>
/// <param name="OnBackward">Receives the adjoint solve's statistics once backward has run (implicit adjoints only).</param>
public sealed record EquilibriumOptions(Solver? Forward = null, Adjoint? Adjoint = null, Action<BackwardReport>? OnBackward = null)
{
    /// <summary>The defaults.</summary>
    public static EquilibriumOptions Default { get; } = new();

    /// <summary>
    /// The training default forward solver: plain iteration, which keeps no history, with Anderson (m = 2) taking
    /// over from its best iterate where it does not converge, each with <paramref name="maxIter"/> steps. Anderson
    /// alone trained worse here: on Table 2's small DEQ-TrellisNet (PTB, 10 iterations) it reached test perplexity
    /// 2253 where plain iteration reached 749 (Broyden m = 30: 894), so it is the fallback, not the first try. Its
    /// history is 2 m copies of z; m = 2 keeps the forward solve below the backward pass's peak (m = 5 put the step's
    /// peak at 20.7 copies of z; with m = 2 and the adjoint below it is 14.7 on the TrellisNet core, <c>deq bench --memory</c>).
    /// </summary>
    public static Solver LeanForward(int maxIter = 30, double tol = 1e-4)
    {
        var o = new SolverOptions(MaxIter: maxIter, Tol: tol);
        return ForwardIteration.Create(o).OrElse(Anderson.Create(o, new AndersonOptions(Memory: 2)));
    }

    /// <summary>
    /// The training default adjoint solve: plain iteration on g = J^T g + dL/dz*, which keeps no history, so that
    /// backward holds one graph of f plus a few copies of z; where it does not converge, damped iteration
    /// (g &lt;- (g + J^T g + dL/dz*) / 2, no history either) takes over from its best iterate, each with
    /// <paramref name="maxIter"/> steps. Damping converges wherever the eigenvalues of J have real part below 1
    /// (plain iteration needs them inside the unit circle), so it catches the oscillating divergence of an
    /// eigenvalue below -1. Anderson (m = 3) as the fallback cost 6 copies of z more at the step's peak; for
    /// J with an eigenvalue of real part 1 or more, pass <see cref="LinearSolve.Gmres"/>.
    /// </summary>
    public static LinearSolver LeanAdjointSolve(int maxIter = 40, double tol = 1e-5)
    {
        var o = new SolverOptions(MaxIter: maxIter, Tol: tol);
        return LinearSolve.FixedPoint(ForwardIteration.Create(o).OrElse(ForwardIteration.Create(o, damping: 0.5)));
    }

    static readonly Solver DefaultForward = LeanForward();
    static readonly Adjoint DefaultAdjoint = Implicit.Adjoint.Implicit();

    /// <summary>The forward solver used: <see cref="Forward"/> or the default.</summary>
    public Solver ForwardSolver => Forward ?? DefaultForward;

    /// <summary>The adjoint used: <see cref="Adjoint"/> or the default.</summary>
    public Adjoint AdjointUsed => Adjoint ?? DefaultAdjoint;
}
