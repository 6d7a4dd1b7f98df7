using Deq.Implicit;
using Deq.Solvers;

namespace Deq.Models;

/// <summary>
/// How a DEQ model is solved and differentiated at each training step. The paper's schedule:
/// for the first <paramref name="PretrainSteps"/> steps train the weight-tied network unrolled
/// <paramref name="UnrolledLayers"/> times (plain backprop), then switch to the equilibrium with
/// implicit gradients. Broyden solves both the forward and the adjoint problem, as in the paper.
/// </summary>
/// <param name="PretrainSteps">Steps [0, PretrainSteps) use the unrolled network; later steps the equilibrium.</param>
/// <param name="UnrolledLayers">L, applications of f in the unrolled network.</param>
/// <param name="ForwardIterations">Most Broyden steps for z* (the reference's f_thres).</param>
/// <param name="BackwardIterations">Most Broyden steps for the adjoint (b_thres).</param>
/// <param name="ForwardTolerance">Relative residual at which the forward solve stops.</param>
/// <param name="BackwardTolerance">Relative residual at which the adjoint solve stops.</param>
public sealed record EquilibriumSchedule(
    int PretrainSteps = 0,
    int UnrolledLayers = 2,
    int ForwardIterations = 30,
    int BackwardIterations = 40,
    double ForwardTolerance = 1e-4,
    double BackwardTolerance = 1e-5)
{
    /// <summary>The weight-tied baseline: always L unrolled applications of f, full backprop.</summary>
    public static EquilibriumSchedule WeightTied(int layers) => new(PretrainSteps: int.MaxValue, UnrolledLayers: layers);

    /// <summary>True for <see cref="WeightTied"/>: the network is never solved, also not at evaluation.</summary>
    public bool IsWeightTied => PretrainSteps == int.MaxValue;

    /// <summary>
    /// Gradient mode at a training step. Negative steps (evaluation) count as past pretraining, except for the
    /// weight-tied baseline, which is evaluated as the L-layer network it was trained as.
    /// </summary>
    public GradientMode GradientAt(int step) =>
        IsWeightTied || step >= 0 && step < PretrainSteps ? GradientMode.Unrolled(UnrolledLayers) : GradientMode.Implicit;

    /// <summary>The equilibrium options at a training step: a pure function of the step.</summary>
    public EquilibriumOptions OptionsAt(int step)
    {
        if (UnrolledLayers < 1) throw new ArgumentOutOfRangeException(nameof(UnrolledLayers), UnrolledLayers, "EquilibriumSchedule.UnrolledLayers must be at least 1.");
        return new EquilibriumOptions(
            Forward: Broyden.Create(new SolverOptions(MaxIter: ForwardIterations, Tol: ForwardTolerance)),
            Backward: Broyden.Create(new SolverOptions(MaxIter: BackwardIterations, Tol: BackwardTolerance)),
            Gradient: GradientAt(step));
    }
}
