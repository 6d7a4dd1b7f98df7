using Deq.Solvers;
using TorchSharp;
using static TorchSharp.torch;

namespace Deq.Implicit;

/// <summary>
/// Fixed-point correction (Bai, Koltun and Kolter, "Deep Equilibrium Optical Flow", 2022): states sampled along the
/// forward solve, each with a phantom gradient attached (k damped steps of f with graph), so that a loss over the
/// trajectory, e.g. sum_i gamma^(n - i) L(z_i), trains the solve's path and not only its end. Memory: one graph of
/// the phantom steps per sample; the solve itself keeps none.
/// </summary>
public static class Trajectory
{
    /// <summary>
    /// Solves with <paramref name="forward"/> and returns the iterates at <paramref name="atSteps"/> (1-based solver
    /// steps; step 1 is z0's) that the solve reached, then its final iterate, each through
    /// <paramref name="phantomSteps"/> damped steps z &lt;- (1 - damping) z + damping f(z) on the tape.
    /// With gradients off the states come back as they are.
    /// </summary>
    public static TrajectoryResult Sample(Func<Tensor, Tensor> f, Tensor z0, Solver forward, IReadOnlyList<int> atSteps,
        int phantomSteps = 1, double damping = 0.8)
    {
        for (int i = 0; i < atSteps.Count; i++)
            if (atSteps[i] < 1 || (i > 0 && atSteps[i] <= atSteps[i - 1]))
                throw new ArgumentException($"Trajectory.Sample: atSteps must be increasing solver steps >= 1; got [{string.Join(", ", atSteps)}].", nameof(atSteps));
        if (phantomSteps < 1) throw new ArgumentOutOfRangeException(nameof(phantomSteps), phantomSteps, "Trajectory.Sample: phantomSteps must be at least 1.");
        if (!(damping > 0 && damping <= 1)) throw new ArgumentOutOfRangeException(nameof(damping), damping, "Trajectory.Sample: damping must lie in (0, 1].");

        var wanted = new HashSet<int>(atSteps);
        var kept = new List<(int Step, Tensor Z)>();
        SolverResult result;
        try
        {
            // Observer views live only during the callback: the copies leave every scope until used below.
            result = forward.Observed(s =>
            {
                if (wanted.Contains(s.Step)) kept.Add((s.Step, s.Z.detach().clone().DetachFromDisposeScope()));
            })(f, z0);
            var states = kept.Select(k => k.Z).Append(result.Value);
            var samples = torch.is_grad_enabled()
                ? states.Select(z => PhantomAdjoint.Unroll(f, z.detach(), phantomSteps, damping)).ToArray()
                : states.Select(z => z.detach().clone()).ToArray();
            return new TrajectoryResult(samples, [.. kept.Select(k => k.Step)], result);
        }
        finally
        {
            foreach (var (_, z) in kept) z.Dispose();
        }
    }
}

/// <summary>What <see cref="Trajectory.Sample"/> returns.</summary>
/// <param name="Samples">The sampled states in solve order, the final iterate last, each with its phantom gradient.</param>
/// <param name="Steps">The solver step of each sample but the final one (steps the solve did not reach are left out).</param>
/// <param name="Forward">The forward solve's statistics.</param>
public sealed record TrajectoryResult(IReadOnlyList<Tensor> Samples, IReadOnlyList<int> Steps, SolverResult Forward)
{
    /// <summary>The final sample: the equilibrium estimate.</summary>
    public Tensor Final => Samples[^1];
}
