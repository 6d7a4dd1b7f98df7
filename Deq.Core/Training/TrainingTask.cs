using TorchSharp;
using static TorchSharp.torch;

namespace Deq.Training;

/// <summary>What the trainer hands a step function.</summary>
/// <param name="Step">0-based index of the step being taken.</param>
/// <param name="Data">The data-order generator (CPU), checkpointed with the run: draw batch indices from it.</param>
public sealed record StepContext(long Step, Generator Data);

/// <summary>Solver figures a DEQ model reports for one step (any may be absent).</summary>
/// <param name="ForwardSteps">Forward (equilibrium) solver steps.</param>
/// <param name="ForwardResidual">Final forward relative residual.</param>
/// <param name="BackwardSteps">Backward (adjoint) solver steps.</param>
/// <param name="BackwardResidual">Final backward relative residual.</param>
public sealed record SolverStats(int? ForwardSteps = null, double? ForwardResidual = null, int? BackwardSteps = null, double? BackwardResidual = null);

/// <summary>One training step's result.</summary>
/// <param name="Loss">Scalar loss with its autograd graph (mean token NLL for a language model); the trainer calls backward.</param>
/// <param name="Tokens">Tokens (or samples) the loss averages over, for logging throughput.</param>
/// <param name="Stats">Read after backward, so backward-solver figures are in; null for models without solvers.</param>
public sealed record StepOutput(Tensor Loss, long Tokens = 1, Func<SolverStats>? Stats = null);

/// <summary>An evaluation's totals: loss = TotalNll / Tokens, perplexity = exp(loss).</summary>
/// <param name="TotalNll">Summed negative log-likelihood (nats).</param>
/// <param name="Tokens">Predictions summed over.</param>
/// <param name="Stats">Solver figures for the evaluation, if any.</param>
public sealed record EvalOutput(double TotalNll, long Tokens, SolverStats? Stats = null)
{
    /// <summary>Mean NLL per token.</summary>
    public double Loss => TotalNll / Tokens;

    /// <summary>exp(mean NLL).</summary>
    public double Perplexity => Math.Exp(Loss);
}

/// <summary>State a task carries between steps (e.g. a language model's memory), saved in checkpoints.</summary>
/// <param name="Save">Current state as named tensors.</param>
/// <param name="Load">Restore from named tensors (as Save produced them).</param>
public sealed record TaskState(Func<IReadOnlyDictionary<string, Tensor>> Save, Action<IReadOnlyDictionary<string, Tensor>> Load);

/// <summary>
/// Everything the trainer needs from a model and its data. The trainer owns the optimiser, the
/// schedule, clipping, RNG, logging and checkpoints; the task only computes losses.
/// </summary>
/// <param name="Module">Parameters to optimise and the state_dict to checkpoint.</param>
/// <param name="Step">Loss for the batch of this step (the task picks the batch from the step index or the data generator).</param>
/// <param name="Evaluate">Validation totals; run in eval mode under no_grad by the trainer. Null: no evaluation.</param>
/// <param name="State">Carried state to checkpoint (null: none).</param>
/// <param name="Fingerprint">Configuration fields (model, data, sizes) a checkpoint must match to be resumed.</param>
public sealed record TrainingTask(
    nn.Module Module,
    Func<StepContext, StepOutput> Step,
    Func<EvalOutput>? Evaluate = null,
    TaskState? State = null,
    IReadOnlyDictionary<string, string>? Fingerprint = null);
