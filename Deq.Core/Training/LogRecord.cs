namespace Deq.Training;

/// <summary>Which figure a log record reports.</summary>
public enum Phase
{
    /// <summary>A training step.</summary>
    Train,
    /// <summary>An evaluation on the validation data.</summary>
    Valid,
    /// <summary>A training step whose update was dropped (non-finite loss or gradient, under <see cref="TrainOptions.SkipNonFiniteSteps"/>).</summary>
    Skipped,
}

/// <summary>One line of the training log. Solver fields are null when the model reports none.</summary>
/// <param name="Phase">Training step or evaluation.</param>
/// <param name="Step">Steps completed (1-based for training records).</param>
/// <param name="TotalSteps">Steps in the run.</param>
/// <param name="Loss">Mean NLL (training batch, or the whole validation set).</param>
/// <param name="Perplexity">exp(Loss).</param>
/// <param name="LearningRate">Rate used for this step (training records).</param>
/// <param name="GradNorm">Global gradient norm before clipping (training records).</param>
/// <param name="Tokens">Tokens this record covers.</param>
/// <param name="Solver">Forward/backward solver steps and residuals, when reported.</param>
/// <param name="WallSeconds">Seconds since the run (or resumed run) began.</param>
/// <param name="Memory">Process RSS now and at peak.</param>
public sealed record LogRecord(
    Phase Phase,
    long Step,
    long TotalSteps,
    double Loss,
    double Perplexity,
    double? LearningRate,
    double? GradNorm,
    long Tokens,
    SolverStats? Solver,
    double WallSeconds,
    ProcessMemory Memory);
