using TorchSharp;
using static TorchSharp.torch;

namespace Deq.Solvers;

/// <summary>
/// A fixed-point solver as a value: given <c>f</c> and a batch-first initial guess <c>z0</c>,
/// it searches for <c>z* = f(z*)</c> and returns the iterate with the lowest residual.
/// Solvers never keep an autograd graph and release every intermediate tensor as they go.
/// The returned <see cref="SolverResult.Value"/> belongs to the caller's current DisposeScope.
/// </summary>
public delegate SolverResult Solver(Func<Tensor, Tensor> f, Tensor z0);
