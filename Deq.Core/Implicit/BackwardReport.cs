using Deq.Solvers;

namespace Deq.Implicit;

/// <summary>What one adjoint solve did during backward.</summary>
/// <param name="Result">The adjoint solve's statistics (<see cref="SolverStatus.Faulted"/> when it threw).</param>
/// <param name="Error">The exception it threw, if any. The gradient through that equilibrium is then zero,
/// and <see cref="Equilibrium.Backward"/> raises it as an <see cref="ImplicitBackwardException"/>.</param>
/// <param name="OfferedProduct">Whether the solve's vector-Jacobian products were f's own (<see cref="VectorJacobian"/>), not autograd's.</param>
public sealed record BackwardReport(SolverResult Result, Exception? Error = null, bool OfferedProduct = false)
{
    /// <summary>True when the adjoint solve threw.</summary>
    public bool Faulted => Error is not null;
}

/// <summary>An adjoint solve failed inside backward; raised by <see cref="Equilibrium.Backward"/> after backward returns.</summary>
public sealed class ImplicitBackwardException(string message, Exception inner) : Exception(message, inner);

/// <summary>
/// Faults of adjoint solves, collected while backward runs: an exception cannot cross libtorch's autograd
/// engine (the process would abort), so the adjoint records it here and returns a zero gradient, and
/// <see cref="Equilibrium.Backward"/> rethrows it on the caller's side. Process-wide because libtorch may run
/// backward on its own threads (CUDA).
/// </summary>
internal static class BackwardFaults
{
    static readonly object Gate = new();
    static readonly List<Exception> Pending = [];
    static int _watchers;

    public static void Record(Exception e)
    {
        lock (Gate) if (_watchers > 0) Pending.Add(e);
    }

    public static IDisposable Watch()
    {
        lock (Gate) _watchers++;
        return new Watcher();
    }

    public static Exception? Take()
    {
        lock (Gate)
        {
            var first = Pending.FirstOrDefault();
            Pending.Clear();
            return first;
        }
    }

    sealed class Watcher : IDisposable
    {
        bool _done;
        public void Dispose()
        {
            if (_done) return;
            _done = true;
            lock (Gate) if (--_watchers == 0) Pending.Clear();
        }
    }
}
