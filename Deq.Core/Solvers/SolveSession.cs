using TorchSharp;
using static TorchSharp.torch;

namespace Deq.Solvers;

/// <summary>
/// The bookkeeping every solver shares: validated calls of f, per-element residuals, the
/// lowest-residual iterate, traces and the stopping rule. Solvers hold only their own state.
/// Tensors it keeps (the best iterate) live outside any DisposeScope and are released here.
/// </summary>
internal sealed class SolveSession : IDisposable
{
    readonly Func<Tensor, Tensor> _f;
    readonly long[] _shape;
    readonly ScalarType _dtype;
    readonly Device _device;
    readonly double[] _bestMetric;
    readonly List<double> _absTrace = [], _relTrace = [];
    double _lowestWorstAbs = double.PositiveInfinity, _lowestWorstRel = double.PositiveInfinity;
    readonly Tensor _z0;
    Tensor? _best;

    public SolverOptions Options { get; }
    public string Name { get; }
    public long Batch { get; }
    public int Steps { get; private set; }
    public int Evaluations { get; private set; }
    public double[] BestAbs { get; }
    public double[] BestRel { get; }
    public SolverStatus? Stopped { get; private set; }
    public string Reason { get; private set; } = "";

    SolveSession(string name, Func<Tensor, Tensor> f, Tensor z0, SolverOptions options)
    {
        Name = name;
        _f = f;
        Options = options.Validate();
        if (z0.dim() < 1 || z0.shape[0] < 1)
            throw new ArgumentException($"{name}: z0 must be batch-first with at least one element; got shape [{string.Join(", ", z0.shape)}].", nameof(z0));
        if (!z0.is_floating_point())
            throw new ArgumentException($"{name}: z0 must be a floating-point tensor; got {z0.dtype}.", nameof(z0));
        using (torch.NewDisposeScope())
            if (!torch.isfinite(z0).all().item<bool>())
                throw new ArgumentException($"{name}: z0 contains NaN or Inf.", nameof(z0));
        _z0 = z0;
        _shape = z0.shape;
        _dtype = z0.dtype;
        _device = z0.device;
        Batch = z0.shape[0];
        BestAbs = Enumerable.Repeat(double.PositiveInfinity, (int)Batch).ToArray();
        BestRel = Enumerable.Repeat(double.PositiveInfinity, (int)Batch).ToArray();
        _bestMetric = Enumerable.Repeat(double.PositiveInfinity, (int)Batch).ToArray();
    }

    /// <summary>Runs <paramref name="body"/> without autograd and packages the outcome.</summary>
    public static SolverResult Run(string name, Func<Tensor, Tensor> f, Tensor z0, SolverOptions options, Action<SolveSession, Tensor> body)
    {
        using var session = new SolveSession(name, f, z0, options);
        using (torch.no_grad())
        using (torch.NewDisposeScope())
        {
            try
            {
                body(session, z0.detach());
            }
            catch (EvaluationBudgetExhausted spent)
            {
                session.Stop(SolverStatus.BudgetExhausted, $"{spent.Message} after {session.Steps} steps");
            }
            if (session.Stopped is null) session.Stop(SolverStatus.MaxIterations, $"stopped at MaxIter = {options.MaxIter} steps");
        }
        return session.Result();
    }

    /// <summary>Takes a tensor out of every DisposeScope: solver state that outlives one step.</summary>
    public static Tensor Keep(Tensor t) => t.DetachFromDisposeScope();

    /// <summary>
    /// Moves a solver's carried iterate from <paramref name="current"/> to <paramref name="next"/>:
    /// keeps next out of the step's DisposeScope and frees current (never the caller's z0).
    /// </summary>
    public static Tensor Advance(Tensor current, Tensor next, Tensor start)
    {
        Keep(next);
        if (!ReferenceEquals(current, start) && !ReferenceEquals(current, next)) current.Dispose();
        return next;
    }

    /// <summary>Frees a carried iterate at the end of a solve, unless it is the caller's z0.</summary>
    public static void Release(Tensor current, Tensor start)
    {
        if (!ReferenceEquals(current, start)) current.Dispose();
    }

    /// <summary>f(z), checked: same shape, dtype and device as z0, and counted.</summary>
    public Tensor Evaluate(Tensor z)
    {
        var budget = EvaluationBudget.Current;
        if (budget is not null && !budget.TryCharge()) throw new EvaluationBudgetExhausted(budget.Limit);
        Evaluations++;
        Tensor fz;
        // f's intermediate tensors go as soon as it returns (with grad off nothing else needs them), so a
        // solver step holds f's output, not its every temporary, until the step's scope ends.
        using (var inner = torch.NewDisposeScope())
        {
            fz = _f(z);
            if (inner.Contains(fz)) inner.MoveToOuter(fz);
        }
        if (!fz.shape.SequenceEqual(_shape))
            throw new InvalidOperationException($"{Name}: f changed the shape: z has [{string.Join(", ", _shape)}], f(z) has [{string.Join(", ", fz.shape)}]. A fixed-point map must return its input's shape.");
        if (fz.dtype != _dtype)
            throw new InvalidOperationException($"{Name}: f changed the dtype from {_dtype} to {fz.dtype}. Give z0 the dtype f computes in.");
        if (fz.device.type != _device.type || fz.device.index != _device.index)
            throw new InvalidOperationException($"{Name}: f returned a tensor on {fz.device}, but z0 is on {_device}. Move z0 or f's parameters to one device.");
        return fz;
    }

    /// <summary>
    /// Records the step (z, f(z)): residuals, the best iterate per element and the traces.
    /// Returns true while the solver should continue; otherwise <see cref="Stopped"/> says why.
    /// </summary>
    public bool Record(Tensor z, Tensor fz)
    {
        Steps++;
        using var scope = torch.NewDisposeScope();
        var (absHost, relHost) = Residuals.PerElement(z, fz, Options.Norm);
        var metric = Options.Stop == StopMode.Absolute ? absHost : relHost;

        var nonFinite = Enumerable.Range(0, metric.Length).Where(i => !double.IsFinite(metric[i])).ToArray();
        if (nonFinite.Length > 0)
        {
            _absTrace.Add(double.NaN);
            _relTrace.Add(double.NaN);
            Stop(SolverStatus.NonFinite, $"f returned NaN or Inf at step {Steps} for batch element(s) [{string.Join(", ", nonFinite.Take(8))}{(nonFinite.Length > 8 ? ", ..." : "")}]; returning the lowest finite iterate");
            return false;
        }
        _absTrace.Add(absHost.Max());
        _relTrace.Add(relHost.Max());

        var improved = new bool[metric.Length];
        for (int i = 0; i < metric.Length; i++)
        {
            if (!(metric[i] < _bestMetric[i])) continue;
            improved[i] = true;
            _bestMetric[i] = metric[i];
            BestAbs[i] = absHost[i];
            BestRel[i] = relHost[i];
        }
        UpdateBest(z, improved);

        double worstAbs = absHost.Max(), worstRel = relHost.Max();
        _lowestWorstAbs = Math.Min(_lowestWorstAbs, worstAbs);
        _lowestWorstRel = Math.Min(_lowestWorstRel, worstRel);
        if (_bestMetric.All(m => m <= Options.Tol))
        {
            Stop(SolverStatus.Converged, $"met {Options.Stop.ToString().ToLowerInvariant()} tolerance {Options.Tol:E1} in {Steps} steps");
            return false;
        }
        // Either measure can blow up alone: the relative one stays flat while z itself explodes.
        if (worstAbs > Options.DivergenceFactor * _lowestWorstAbs || worstRel > Options.DivergenceFactor * _lowestWorstRel)
        {
            Stop(SolverStatus.Diverged, $"residual (abs {worstAbs:E2}, rel {worstRel:E2}) at step {Steps} exceeds {Options.DivergenceFactor:E0} x its lowest (abs {_lowestWorstAbs:E2}, rel {_lowestWorstRel:E2})");
            return false;
        }
        if (Steps >= Options.MaxIter)
        {
            Stop(SolverStatus.MaxIterations, $"stopped at MaxIter = {Options.MaxIter} steps, worst {Options.Stop.ToString().ToLowerInvariant()} residual {_bestMetric.Max():E2} > tol {Options.Tol:E1}");
            return false;
        }
        return true;
    }

    /// <summary>Ends the solve early for a reason the solver detected itself.</summary>
    public void Stop(SolverStatus status, string reason)
    {
        Stopped ??= status;
        if (Reason.Length == 0) Reason = reason;
    }

    void UpdateBest(Tensor z, bool[] improved)
    {
        if (!improved.Any(b => b)) return;
        Tensor next;
        if (_best is null || improved.All(b => b))
        {
            next = z.detach().clone();
        }
        else
        {
            var mask = torch.tensor(improved, device: z.device).reshape([Batch, .. Enumerable.Repeat(1L, (int)z.dim() - 1)]);
            next = torch.where(mask, z, _best);
        }
        next.DetachFromDisposeScope();
        _best?.Dispose();
        _best = next;
    }

    SolverResult Result()
    {
        // No finite step at all (f(z0) was NaN): z0 itself is the best we have.
        var value = _best ?? _z0.detach().clone().DetachFromDisposeScope();
        _best = null;
        torch.CurrentDisposeScope?.Attach(value);
        var converged = _bestMetric.Select(m => m <= Options.Tol).ToArray();
        return new SolverResult(value, Stopped!.Value, Reason, Steps, Evaluations,
            BestAbs, BestRel, _absTrace, _relTrace, converged, Name);
    }

    public void Dispose() => _best?.Dispose();
}
