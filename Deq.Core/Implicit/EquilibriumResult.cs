using Deq.Solvers;
using static TorchSharp.torch;

namespace Deq.Implicit;

/// <summary>
/// What <see cref="Equilibrium.Solve"/> returns, complete and immutable. The adjoint solve's statistics
/// arrive later, through <see cref="EquilibriumOptions.OnBackward"/>, once backward has run.
/// </summary>
/// <param name="Z">The equilibrium, shaped like z0. Differentiable with respect to f's parameters and inputs.</param>
/// <param name="Forward">Forward solver statistics (for <see cref="Adjoint.Unrolled"/>: the last step's residual).</param>
/// <param name="Adjoint">The adjoint used.</param>
public sealed record EquilibriumResult(Tensor Z, SolverResult Forward, Adjoint Adjoint);
