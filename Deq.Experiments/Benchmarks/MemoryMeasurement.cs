namespace Deq.Experiments.Benchmarks;

/// <summary>What one memory probe measured.</summary>
/// <param name="Config">The configuration measured.</param>
/// <param name="PeakBytes">Peak memory of the step above the baseline before it (the result).</param>
/// <param name="BaselineBytes">Memory in use when the step began (module, input, gradients of a warm-up step, runtime).</param>
/// <param name="PeakAbsoluteBytes">The peak itself, baseline included.</param>
/// <param name="StateBytes">Bytes of one state z (batch x length x channels x element size): the peak in these units says how many copies of z the step held.</param>
/// <param name="Parameters">Parameters of the core.</param>
/// <param name="StepSeconds">Wall time of the measured step (one run, no repetitions: indicative only).</param>
/// <param name="ForwardSteps">Solver steps (DEQ) or applications of f (unrolled) in the forward pass.</param>
/// <param name="BackwardSteps">Adjoint solver steps (DEQ; 0 for the unrolled stack).</param>
/// <param name="ForwardRelResidual">Lowest relative residual ||f(z) - z|| / ||f(z)|| reached (worst over the batch).</param>
/// <param name="Method">How the peak was measured, in words.</param>
public sealed record MemoryMeasurement(
    MemoryProbeConfig Config,
    long PeakBytes,
    long BaselineBytes,
    long PeakAbsoluteBytes,
    long StateBytes,
    long Parameters,
    double StepSeconds,
    int ForwardSteps,
    int BackwardSteps,
    double ForwardRelResidual,
    string Method)
{
    /// <summary>The peak in MiB.</summary>
    public double PeakMiB => PeakBytes / (1024.0 * 1024.0);

    /// <summary>The peak in copies of z.</summary>
    public double PeakInStates => StateBytes > 0 ? (double)PeakBytes / StateBytes : double.NaN;
}
