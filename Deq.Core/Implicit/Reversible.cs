using Deq.Solvers;
using TorchSharp;
using static TorchSharp.torch;

namespace Deq.Implicit;

/// <summary>
/// The reversible fixed-point solver of Reversible DEQs (McCallum, Arora and Foster, 2025), as a solver value
/// and as a differentiable equilibrium. Forward runs the coupled relaxation from y0 = z0:
/// <code>y' = (1 - beta) y + beta f(z);   z' = (1 - beta) z + beta f(y')</code>
/// Each step is inverted algebraically (z = (z' - beta f(y')) / (1 - beta), then y = (y' - beta f(z)) / (1 - beta)),
/// so backward rebuilds every state from the last one and backpropagates through the exact iteration that ran:
/// the gradient is that of the steps taken (not an adjoint solve's approximation), and memory holds one graph of
/// f at a time, constant in the number of steps.
/// </summary>
public static class Reversible
{
    /// <summary>
    /// The coupled relaxation as a forward-only <see cref="Solver"/> (its iterate is z), composable like any other
    /// (e.g. <c>Reversible.Create(o).OrElse(...)</c>). Two f evaluations a step.
    /// </summary>
    public static Solver Create(SolverOptions? options = null, double beta = ReversibleOptions.DefaultBeta)
    {
        ReversibleOptions.CheckBeta(beta);
        var name = $"reversible(beta={beta})";
        return SolverMethod.Create(name, (ctx, it) => ctx.Keep(it.Z.clone()), (ctx, y, it) =>
        {
            y.mul_(1 - beta).add_(it.Fz, alpha: beta);
            var z = it.Z * (1 - beta) + ctx.Evaluate(y) * beta;
            return new Iterate(z, ctx.Evaluate(z));
        }, options);
    }

    /// <summary>
    /// z* of <paramref name="f"/>(z, x) from <paramref name="z0"/> by the coupled relaxation, differentiable with
    /// respect to <paramref name="x"/> and <paramref name="parameters"/> by exact reversal (see the type).
    /// </summary>
    /// <param name="f">The map, with its input explicit: backward evaluates it at rebuilt states against a detached x.</param>
    /// <param name="x">The input injection (any shape f accepts); its gradient flows to whatever produced it.</param>
    /// <param name="z0">The start, batch-first; it gets no gradient.</param>
    /// <param name="parameters">Every tensor f uses, besides z and x, that needs a gradient (e.g. <c>module.parameters()</c>).</param>
    /// <param name="options">Relaxation, step cap and tolerance.</param>
    public static ReversibleResult Solve(Func<Tensor, Tensor, Tensor> f, Tensor x, Tensor z0, IEnumerable<Tensor> parameters, ReversibleOptions? options = null)
    {
        var o = (options ?? new ReversibleOptions()).Validate();
        var ps = parameters.ToArray();
        var (y, z, stats) = ReversibleForward.Run(f, x, z0, o);
        if (!torch.is_grad_enabled() || !(x.requires_grad || ps.Any(p => p.requires_grad)))
        {
            y.Dispose();
            return new ReversibleResult(z, stats, o);
        }
        var problem = new ReversibleHook.Problem(f, ps, o.Beta, stats.Steps);
        return new ReversibleResult(ReversibleHook.Attach(z, y, x, problem), stats, o);
    }
}

/// <summary>Settings of <see cref="Reversible.Solve"/>.</summary>
/// <param name="Beta">Relaxation, in (0, 2) and not 1 (the inversion divides by 1 - beta). The paper uses values near 0.5 to 0.9.</param>
/// <param name="MaxIterations">Step cap (each step evaluates f twice).</param>
/// <param name="Tolerance">Stop when every element's relative residual ||f(z) - z|| / ||f(z)|| is at most this.</param>
public sealed record ReversibleOptions(double Beta = ReversibleOptions.DefaultBeta, int MaxIterations = 30, double Tolerance = 1e-4)
{
    /// <summary>The default relaxation.</summary>
    public const double DefaultBeta = 0.8;

    /// <summary>Checks the settings, naming the bad one.</summary>
    public ReversibleOptions Validate()
    {
        CheckBeta(Beta);
        if (MaxIterations < 1) throw new ArgumentOutOfRangeException(nameof(MaxIterations), MaxIterations, "ReversibleOptions.MaxIterations must be at least 1.");
        if (!(Tolerance >= 0) || double.IsInfinity(Tolerance)) throw new ArgumentOutOfRangeException(nameof(Tolerance), Tolerance, "ReversibleOptions.Tolerance must be a finite number >= 0.");
        return this;
    }

    internal static void CheckBeta(double beta)
    {
        if (!(beta > 0 && beta < 2) || beta == 1)
            throw new ArgumentOutOfRangeException("Beta", beta, "Reversible relaxation beta must lie in (0, 2) and not be 1 (each step is inverted by dividing by 1 - beta).");
    }

    /// <summary>A short readable description.</summary>
    public string Describe() => $"reversible(beta={Beta}, {MaxIterations} iters, rel {Tolerance:0.#E+0})";
}

/// <summary>What <see cref="Reversible.Solve"/> returns.</summary>
/// <param name="Z">z after the last step, attached to autograd when gradients are on.</param>
/// <param name="Forward">The forward statistics: steps taken and the residual ||f(z) - z|| at each step's z.</param>
/// <param name="Options">The settings used.</param>
public sealed record ReversibleResult(Tensor Z, SolverResult Forward, ReversibleOptions Options);
