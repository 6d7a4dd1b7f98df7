namespace Deq.Training;

/// <summary>What a run will do with its checkpoint path, found before any training (see <see cref="Trainer.CheckCheckpoint"/>).</summary>
/// <param name="Path">The checkpoint path (null: the run writes none).</param>
/// <param name="Resumes">True when the run continues an existing checkpoint.</param>
/// <param name="Step">The checkpoint's step when resuming (else 0).</param>
/// <param name="SavedTotalSteps">The total steps the checkpoint's run was given when resuming (its cosine schedule ended there).</param>
/// <param name="Replaces">True when a fresh run will replace an existing file (<see cref="TrainOptions.Overwrite"/>).</param>
/// <param name="StaleTemporariesRemoved">Temporary files of interrupted writes that were deleted.</param>
public sealed record CheckpointStart(string? Path, bool Resumes, long Step, long SavedTotalSteps, bool Replaces, int StaleTemporariesRemoved)
{
    /// <summary>True when resuming was asked for but there is no checkpoint yet, so the run starts afresh.</summary>
    public bool ResumeStartsAfresh(TrainOptions options) => options.Resume && !Resumes;
}

/// <summary>A checkpoint's step, the total steps its run was given, and its configuration fields.</summary>
/// <param name="Step">Steps completed when it was written.</param>
/// <param name="TotalSteps">The run's <see cref="TrainOptions.Steps"/> when it was written.</param>
/// <param name="Fingerprint">Configuration fields a resumed run must match.</param>
public sealed record CheckpointInfo(long Step, long TotalSteps, IReadOnlyDictionary<string, string> Fingerprint);
