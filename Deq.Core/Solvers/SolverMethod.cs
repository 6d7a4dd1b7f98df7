using static TorchSharp.torch;

namespace Deq.Solvers;

/// <summary>
/// A solver in the step protocol: <see cref="Init"/> builds the state from the first iterate (z0, f(z0)),
/// <see cref="Step"/> proposes the next iterate and evaluates f there through the context, and
/// <see cref="Done"/> (optional) runs when the solve ends. The one driver loop does the rest for every
/// solver: the per-element bookkeeping (on the device, or on the host for CPU tensors), the stop rule, failure
/// masking, traces and the result.
/// State tensors come from <see cref="SolveContext.Keep"/>, so the driver frees them.
/// </summary>
/// <typeparam name="TState">The solver's own state (history, factors); a class mutated in place.</typeparam>
/// <param name="Name">The name results carry, e.g. "anderson".</param>
/// <param name="Init">State from the first iterate.</param>
/// <param name="Step">The next iterate from the current one; calls <see cref="SolveContext.Evaluate(TorchSharp.torch.Tensor)"/> once (or more, for a line search).</param>
/// <param name="Done">Called once when the solve ends, if given.</param>
public sealed record SolverMethod<TState>(
    string Name,
    Func<SolveContext, Iterate, TState> Init,
    Func<SolveContext, TState, Iterate, Iterate> Step,
    Action<TState>? Done = null)
{
    /// <summary>The solver value: this method run by the driver loop with <paramref name="options"/>.</summary>
    public Solver ToSolver(SolverOptions? options = null)
    {
        var o = (options ?? SolverOptions.Default).Validate();
        Solver solver = (f, z0) => SolveLoop.Run(this, o, f, z0);
        return SolverDescriptions.Register(SolveLoop.Mark(solver), $"{Name}({SolverDescriptions.Limits(o)})");
    }
}

/// <summary>Builds solvers from step functions.</summary>
public static class SolverMethod
{
    /// <summary>
    /// A solver with no state of its own, written as one step function. For example, damped iteration:
    /// <code>SolverMethod.Create("half", (ctx, it) => { var z = it.Z.lerp(it.Fz, 0.5); return new Iterate(z, ctx.Evaluate(z)); })</code>
    /// </summary>
    public static Solver Create(string name, Func<SolveContext, Iterate, Iterate> step, SolverOptions? options = null) =>
        new SolverMethod<object?>(name, (_, _) => null, (ctx, _, it) => step(ctx, it)).ToSolver(options);

    /// <summary>A solver with state: <paramref name="init"/> builds it from (z0, f(z0)), <paramref name="step"/> advances.</summary>
    public static Solver Create<TState>(string name, Func<SolveContext, Iterate, TState> init,
        Func<SolveContext, TState, Iterate, Iterate> step, SolverOptions? options = null) =>
        new SolverMethod<TState>(name, init, step).ToSolver(options);
}
