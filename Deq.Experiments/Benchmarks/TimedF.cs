using System.Diagnostics;
using static TorchSharp.torch;

namespace Deq.Experiments.Benchmarks;

/// <summary>f with a stopwatch around every call: what a solver spends inside f, against its total time.</summary>
public sealed class TimedF
{
    readonly Func<Tensor, Tensor> _f;
    readonly Stopwatch _clock = new();

    /// <summary>Wraps <paramref name="f"/>.</summary>
    public TimedF(Func<Tensor, Tensor> f)
    {
        _f = f;
        F = z =>
        {
            _clock.Start();
            try { return _f(z); }
            finally { _clock.Stop(); Calls++; }
        };
    }

    /// <summary>The timed f (synchronous on CPU; on CUDA the time is launch time unless f synchronises).</summary>
    public Func<Tensor, Tensor> F { get; }
    /// <summary>One timed call of f (what a solver does per evaluation), as a method for callers without delegates.</summary>
    public Tensor Apply(Tensor z) => F(z);
    /// <summary>Time inside f so far.</summary>
    public TimeSpan Elapsed => _clock.Elapsed;
    /// <summary>Calls so far.</summary>
    public int Calls { get; private set; }
}
