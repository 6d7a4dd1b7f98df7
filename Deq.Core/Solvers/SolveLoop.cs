using System.Runtime.CompilerServices;
using TorchSharp;
using static TorchSharp.torch;

namespace Deq.Solvers;

/// <summary>The one driver loop every solver runs in: evaluate f(z0), then Init, then Step until the ledger says stop.</summary>
internal static class SolveLoop
{
    static readonly ConditionalWeakTable<Solver, object> Loops = new();
    [ThreadStatic] static Tensor? _handedOver;

    /// <summary>Marks <paramref name="solver"/> as one that runs this loop directly on the z0 it is given.</summary>
    public static Solver Mark(Solver solver)
    {
        Loops.AddOrUpdate(solver, Loops);
        return solver;
    }

    /// <summary>
    /// Runs <paramref name="solver"/> from <paramref name="z0"/>, a tensor the caller frees right after: when the
    /// solver runs this loop directly, the loop frees z0's handle as soon as its own first iterate goes, so a
    /// fallback does not hold its start (one copy of z) through the whole solve. Any other solver just runs.
    /// </summary>
    public static SolverResult RunHandingOver(Solver solver, Func<Tensor, Tensor> f, Tensor z0)
    {
        if (!Loops.TryGetValue(solver, out _)) return solver(f, z0);
        _handedOver = z0;
        try
        {
            return solver(f, z0);
        }
        finally
        {
            _handedOver = null;
        }
    }

    public static SolverResult Run<TState>(SolverMethod<TState> method, SolverOptions o, Func<Tensor, Tensor> f, Tensor z0)
    {
        // A handed-over start belongs to this solve only (taken here, so solves nested inside f do not see it).
        bool ownsZ0 = ReferenceEquals(_handedOver, z0);
        _handedOver = null;
        // The observer belongs to this solve only: solves nested inside f do not report to it.
        var observer = SolveObserver.Take();
        using var ctx = new SolveContext(method.Name, f, z0, o) { OwnedStart = ownsZ0 ? z0 : null };
        using var ledger = SolveLedger.For(o, ctx.Batch, z0);
        Tensor? best;
        using (torch.no_grad())
        using (torch.NewDisposeScope())
        {
            Iterate current = default;
            TState? state = default;
            bool hasState = false;
            try
            {
                bool go;
                using (torch.NewDisposeScope())
                {
                    var z = ctx.IsFlat ? z0.detach() : z0.detach().reshape(ctx.Batch, ctx.Width);
                    current = Adopt(new Iterate(z, ctx.Evaluate(z)), default);
                    go = Record(ctx, ledger, current, observer);
                    if (go)
                    {
                        state = method.Init(ctx, current);
                        hasState = true;
                    }
                }
                while (go)
                {
                    using var step = torch.NewDisposeScope();
                    current = Adopt(method.Step(ctx, state!, current), current);
                    ctx.ReleaseStart();   // (if the step did not already) the first iterate has gone, the ledger holds its own best
                    go = Record(ctx, ledger, current, observer) && ctx.Stopped is null;
                    current = current with { Residual = null };      // it goes with the step's scope
                }
            }
            catch (EvaluationBudgetExhausted spent)
            {
                ctx.Stop(SolverStatus.BudgetExhausted, $"{spent.Message} after {ctx.Step} steps");
            }
            finally
            {
                if (hasState) method.Done?.Invoke(state!);
                Release(current);
                SolveObserver.Restore(observer);
            }
            best = ledger.TakeBest();
        }
        return SolveOutcome.Build(ctx, ledger.Snapshot(ctx.Step), best, z0, ledger.BatchMetAt);
    }

    static bool Record(SolveContext ctx, SolveLedger ledger, Iterate it, Action<SolverStep>? observer)
    {
        ctx.Step++;
        bool go = ledger.Record(it, ctx.Step) && ctx.Step < ctx.Options.MaxIter;
        observer?.Invoke(SolverStep.At(ctx, it));
        return go;
    }

    // The driver owns the current iterate: keep the new one past the step's scope, free the old one.
    static Iterate Adopt(Iterate next, Iterate previous)
    {
        next.Z.DetachFromDisposeScope();
        next.Fz.DetachFromDisposeScope();
        foreach (var t in new[] { previous.Z, previous.Fz })
            if (t is not null && !ReferenceEquals(t, next.Z) && !ReferenceEquals(t, next.Fz) && !t.IsInvalid) t.Dispose();
        return next;
    }

    static void Release(Iterate it)
    {
        if (it.Z is not null && !it.Z.IsInvalid) it.Z.Dispose();
        if (it.Fz is not null && !ReferenceEquals(it.Fz, it.Z) && !it.Fz.IsInvalid) it.Fz.Dispose();
    }
}
