using TorchSharp;
using static TorchSharp.torch;

namespace Deq.Training;

/// <summary>A language model's forward pass over one segment.</summary>
/// <param name="Logits">[L, batch, vocab] next-token logits; null where the model scores targets only (<paramref name="Nll"/>).</param>
/// <param name="Memory">State to carry into the next segment (the trainer detaches it); null for none.</param>
/// <param name="Stats">Solver figures, read after backward; null for models without solvers.</param>
/// <param name="Nll">
/// Targets [L, batch] → per-token negative log-likelihood [L · batch] (any token order), in place of the logits.
/// An adaptive softmax gives it: it scores each tail cluster on its own targets only, where full logits score all
/// of them for every token (on WikiText-2's 33,278 words, about 5x less work for the softmax).
/// </param>
public sealed record LanguageModelOutput(Tensor? Logits, Tensor? Memory, Func<SolverStats>? Stats = null, Func<Tensor, Tensor>? Nll = null)
{
    /// <summary>
    /// Negative log-likelihood of <paramref name="target"/> [L, batch]: per token [L · batch] (Reduction.None), or its
    /// mean or sum. From <see cref="Nll"/> where given, else the cross-entropy of <see cref="Logits"/>.
    /// </summary>
    public Tensor Loss(Tensor target, nn.Reduction reduction = nn.Reduction.Mean)
    {
        if (Nll is not null)
        {
            var nll = Nll(target);
            return reduction switch { nn.Reduction.Mean => nll.mean(), nn.Reduction.Sum => nll.sum(), _ => nll };
        }
        if (Logits is null) throw new InvalidOperationException("LanguageModelOutput has neither Logits nor Nll: a model's forward must give one of them.");
        return nn.functional.cross_entropy(Logits.reshape(-1, Logits.shape[^1]), target.reshape(-1), reduction: reduction);
    }
}

/// <summary>
/// A language model as training sees it: a module plus a forward over a [L, batch] segment of token ids
/// and the memory from the previous segment (null at the start of a pass).
/// </summary>
/// <param name="Module">Parameters and state_dict.</param>
/// <param name="Forward">
/// (input [L, batch] int64, memory or null, the training step or null in evaluation) → logits and new memory.
/// Models whose training follows a schedule of the step (a DEQ's unrolled pretraining) read it from the
/// context, so a resumed run continues the schedule where it stopped.
/// </param>
/// <param name="Config">Configuration fields for the checkpoint fingerprint (sizes, solver settings).</param>
public sealed record LanguageModel(nn.Module Module, Func<Tensor, Tensor?, StepContext?, LanguageModelOutput> Forward, IReadOnlyDictionary<string, string> Config);

/// <summary>What a model factory is told.</summary>
/// <param name="VocabSize">Output classes.</param>
/// <param name="Device">Where the parameters go.</param>
/// <param name="DType">Floating-point type of the parameters.</param>
/// <param name="Seed">Initialisation seed (the factory's draws are made under it).</param>
/// <param name="Forward">DEQ models: the forward solver in place of the preset's (null: the preset's). Models without one ignore it.</param>
/// <param name="Adjoint">DEQ models: the adjoint after pretraining in place of the preset's (null: the preset's).</param>
public sealed record LanguageModelSpec(int VocabSize, Device Device, ScalarType DType = ScalarType.Float32, long Seed = 0,
                                       Deq.Solvers.Solver? Forward = null, Deq.Implicit.Adjoint? Adjoint = null);
