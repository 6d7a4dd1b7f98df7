using Deq.Solvers;
using static TorchSharp.torch;

namespace Deq.Implicit;

/// <summary>
/// How gradients flow through an equilibrium: a value handed to <see cref="Equilibrium.Solve"/>, as in
/// optimistix. The shipped adjoints are the factories below; a user's own adjoint subclasses this record
/// and implements <see cref="Solve"/>.
/// </summary>
public abstract record Adjoint
{
    /// <summary>
    /// Finds the equilibrium of <paramref name="f"/> from <paramref name="z0"/> with <paramref name="forward"/>
    /// (or not: <see cref="Unrolled"/> applies f a fixed number of times) and returns it attached to autograd
    /// when gradients are on. Backward statistics go to <paramref name="onBackward"/> once backward has run.
    /// </summary>
    public abstract EquilibriumResult Solve(Func<Tensor, Tensor> f, Tensor z0, Solver forward, Action<BackwardReport>? onBackward);

    /// <summary>A short readable description, for tables and logs.</summary>
    public abstract string Describe();

    /// <summary>
    /// The exact implicit-function-theorem gradient: one graph of f at z* produces the output, and its
    /// vector-Jacobian products solve the adjoint g = (df/dz)^T g + dL/dz* with <paramref name="solve"/>
    /// (default: <see cref="EquilibriumOptions.LeanAdjointSolve"/>). Backward never calls f again.
    /// </summary>
    public static Adjoint Implicit(LinearSolver? solve = null) => new ImplicitAdjoint(solve ?? EquilibriumOptions.LeanAdjointSolve(), null);

    /// <summary>The implicit gradient with the adjoint solved as a fixed point by <paramref name="backward"/> (the paper's choice is Broyden).</summary>
    public static Adjoint Implicit(Solver backward) => new ImplicitAdjoint(LinearSolve.FixedPoint(backward), backward.Describe());

    /// <summary>The Jacobian-free (1-step) gradient: backpropagate through one application of f at z*, i.e. take g = dL/dz*.</summary>
    public static Adjoint JacobianFree { get; } = new JacobianFreeAdjoint();

    /// <summary>Phantom gradient: backpropagate through <paramref name="steps"/> damped steps z &lt;- (1 - damping) z + damping f(z) from z*.</summary>
    public static Adjoint Phantom(int steps, double damping = 0.5) => new PhantomAdjoint(steps, damping);

    /// <summary>
    /// No solver: apply f <paramref name="steps"/> times from z0 and backpropagate through all of them.
    /// This is the weight-tied baseline, and the paper's pretraining mode.
    /// </summary>
    public static Adjoint Unrolled(int steps) => new UnrolledAdjoint(steps);
}
