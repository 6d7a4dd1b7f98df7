using System.Text;
using Deq.Implicit;
using Deq.Solvers;

namespace Deq.Models;

/// <summary>
/// How a DEQ model is solved and differentiated at each training step. The paper's schedule: for the
/// first <paramref name="PretrainSteps"/> steps train the weight-tied network unrolled
/// <paramref name="UnrolledLayers"/> times (plain backprop), then switch to the equilibrium found by
/// <paramref name="Forward"/> and differentiated by <paramref name="Adjoint"/>. Solvers are values: any
/// <see cref="Solver"/> and any <see cref="Implicit.Adjoint"/> fit.
/// </summary>
/// <param name="PretrainSteps">Steps [0, PretrainSteps) use the unrolled network; later steps the equilibrium.</param>
/// <param name="UnrolledLayers">L, applications of f in the unrolled network.</param>
/// <param name="Forward">The forward solver; null: <see cref="EquilibriumOptions.LeanForward"/>.</param>
/// <param name="Adjoint">The adjoint after pretraining; null: the implicit adjoint with <see cref="EquilibriumOptions.LeanAdjointSolve"/>.</param>
public sealed record EquilibriumSchedule(int PretrainSteps = 0, int UnrolledLayers = 2, Solver? Forward = null, Adjoint? Adjoint = null)
{
    /// <summary>The weight-tied baseline: always L unrolled applications of f, full backprop.</summary>
    public static EquilibriumSchedule WeightTied(int layers) => new(PretrainSteps: int.MaxValue, UnrolledLayers: layers);

    /// <summary>
    /// The memory-lean training default with these limits: plain iteration forward with Anderson (m = 2) as its
    /// fallback (<see cref="EquilibriumOptions.LeanForward"/>), the implicit adjoint solved by
    /// plain iteration with damped iteration as its fallback (<see cref="EquilibriumOptions.LeanAdjointSolve"/>), relative tolerances.
    /// </summary>
    public static EquilibriumSchedule Lean(int forwardIterations = 30, int backwardIterations = 40, double forwardTol = 1e-4, double backwardTol = 1e-5,
        int pretrainSteps = 0, int unrolledLayers = 2) =>
        new(pretrainSteps, unrolledLayers, EquilibriumOptions.LeanForward(forwardIterations, forwardTol),
            Implicit.Adjoint.Implicit(EquilibriumOptions.LeanAdjointSolve(backwardIterations, backwardTol)));

    /// <summary>The paper's pair: Broyden (rank <paramref name="memory"/>) forward and on the adjoint's fixed point.</summary>
    public static EquilibriumSchedule Broyden(int forwardIterations = 30, int backwardIterations = 40, double forwardTol = 1e-4, double backwardTol = 1e-5,
        int memory = 30, int pretrainSteps = 0, int unrolledLayers = 2) =>
        new(pretrainSteps, unrolledLayers, Solvers.Broyden.Create(new SolverOptions(MaxIter: forwardIterations, Tol: forwardTol), new BroydenOptions(Memory: memory)),
            Implicit.Adjoint.Implicit(Solvers.Broyden.Create(new SolverOptions(MaxIter: backwardIterations, Tol: backwardTol), new BroydenOptions(Memory: memory))));

    /// <summary>True for <see cref="WeightTied"/>: the network is never solved, also not at evaluation.</summary>
    public bool IsWeightTied => PretrainSteps == int.MaxValue;

    /// <summary>
    /// The adjoint at a training step. Negative steps (evaluation) count as past pretraining, except for the
    /// weight-tied baseline, which is evaluated as the L-layer network it was trained as.
    /// </summary>
    public Adjoint AdjointAt(int step) =>
        IsWeightTied || step >= 0 && step < PretrainSteps ? Implicit.Adjoint.Unrolled(UnrolledLayers) : Adjoint ?? EquilibriumOptions.Default.AdjointUsed;

    /// <summary>The equilibrium options at a training step: a pure function of the step.</summary>
    public EquilibriumOptions OptionsAt(int step)
    {
        if (UnrolledLayers < 1) throw new ArgumentOutOfRangeException(nameof(UnrolledLayers), UnrolledLayers, "EquilibriumSchedule.UnrolledLayers must be at least 1.");
        return new EquilibriumOptions(Forward ?? EquilibriumOptions.Default.ForwardSolver, AdjointAt(step));
    }

    /// <summary>In words: "200 pretraining steps (2 layers), then anderson(...) with implicit(...)".</summary>
    public string Describe() => IsWeightTied
        ? $"weight-tied, {UnrolledLayers} layers"
        : $"{(PretrainSteps > 0 ? $"{PretrainSteps} pretraining steps ({UnrolledLayers} layers), then " : "")}" +
          $"{(Forward ?? EquilibriumOptions.Default.ForwardSolver).Describe()} with {AdjointAt(-1).Describe()}";

    // Records print delegates as their type name; configuration fingerprints need what the solvers are.
    bool PrintMembers(StringBuilder builder)
    {
        builder.Append(Describe());
        return true;
    }
}
