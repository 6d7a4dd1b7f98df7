using System.Globalization;
using Deq.Implicit;
using Deq.Layers;
using Deq.Training;
using TorchSharp;
using static TorchSharp.torch;

namespace Deq.Models;

/// <summary>
/// The DEQ language models as the trainer sees them (<see cref="LanguageModel"/>): time-major [L, B] input,
/// [L, B, V] log-probabilities as logits (cross-entropy of log-probabilities is the NLL) or, with an adaptive
/// softmax of several clusters, the targets' NLL alone, and the segment memory packed into one tensor.
/// <see cref="Registry"/> names every model Deq ships.
/// </summary>
public static class DeqLanguageModels
{
    /// <summary>Every model Deq ships, for `deq train --model NAME`.</summary>
    public static ModelRegistry Registry { get; } = ModelRegistry.Empty
        .With("lstm-tiny", spec => TinyLstm.Create(spec))
        .With("deq-transformer-tiny", spec => Transformer("deq-transformer-tiny", spec, DeqTransformerConfig.Tiny))
        .With("deq-transformer-cpu-small", spec => Transformer("deq-transformer-cpu-small", spec, DeqTransformerConfig.CpuSmall))
        .With("deq-trellisnet-tiny", spec => TrellisNet("deq-trellisnet-tiny", spec, DeqTrellisNetConfig.Tiny));

    /// <summary>
    /// The schedule's step: the trainer's step for a training forward, -1 (past pretraining) in evaluation.
    /// Read from the step context, not counted, so a resumed run does not repeat the pretraining.
    /// </summary>
    static int ScheduleStep(nn.Module m, StepContext? context) =>
        context is { } c && m.training && torch.is_grad_enabled() ? (int)Math.Min(c.Step, int.MaxValue) : -1;

    /// <summary>The schedule's options at the step, with the adjoint's report captured for the trainer's log.</summary>
    static (EquilibriumOptions Options, Func<EquilibriumResult, Func<SolverStats>> Stats) Observe(EquilibriumSchedule schedule, int step)
    {
        BackwardReport? report = null;
        var options = schedule.OptionsAt(step) with { OnBackward = r => report = r };
        return (options, eq => () => new SolverStats(eq.Forward.Steps, eq.Forward.RelLowest, report?.Result.Steps, report?.Result.RelLowest));
    }

    /// <summary>The preset's schedule with the spec's solvers, where it names any (`deq train --forward-solver ...`).</summary>
    static EquilibriumSchedule WithSolvers(EquilibriumSchedule schedule, LanguageModelSpec spec) =>
        schedule with { Forward = spec.Forward ?? schedule.Forward, Adjoint = spec.Adjoint ?? schedule.Adjoint };

    static Dictionary<string, string> Fingerprint(string name, LanguageModelSpec spec, object config) => new()
    {
        ["model.name"] = name,
        ["model.config"] = config.ToString() ?? "",
        ["model.vocab"] = spec.VocabSize.ToString(CultureInfo.InvariantCulture),
        ["model.init_seed"] = spec.Seed.ToString(CultureInfo.InvariantCulture),
    };

    /// <summary>
    /// The trainer's output for batch-first features [B, T, d]: with an adaptive softmax of several clusters, the
    /// targets' NLL alone (<paramref name="nll"/>, each tail cluster scored on its own targets); else time-major
    /// log-probabilities [T, B, V] (<paramref name="logProbs"/>).
    /// </summary>
    public static LanguageModelOutput Output(AdaptiveLogSoftmax head, Tensor hidden, Func<Tensor, Tensor> logProbs, Func<Tensor, Tensor, Tensor> nll,
        Tensor? memory, Func<SolverStats>? stats = null) =>
        head.Clusters.Count > 1
            ? new LanguageModelOutput(null, memory, stats, target => nll(hidden, target.t()))
            : new LanguageModelOutput(logProbs(hidden).transpose(0, 1), memory, stats);

    /// <summary>A DEQ-Transformer for the trainer; memory is [Z; Injection] concatenated on the feature axis, [B, M, d + 3 H dh].</summary>
    public static LanguageModel Transformer(string name, LanguageModelSpec spec, DeqTransformerConfig config)
    {
        var c = config with { NToken = spec.VocabSize, Schedule = WithSolvers(config.EffectiveSchedule, spec) };
        torch.manual_seed(spec.Seed);
        var m = new DeqTransformerLM(c);
        m.to(spec.DType).to(spec.Device);
        LanguageModelOutput Forward(Tensor input, Tensor? packed, StepContext? context)
        {
            TransformerMemory? memory = packed is null ? null
                : new TransformerMemory(packed.narrow(2, 0, c.DModel), packed.narrow(2, c.DModel, packed.shape[2] - c.DModel));
            var (options, stats) = Observe(c.EffectiveSchedule, ScheduleStep(m, context));
            var output = m.Forward(input.t(), memory, options);
            var next = output.Memory.Length == 0 ? null : torch.cat([output.Memory.Z, output.Memory.Injection], 2);
            return Output(m.crit, output.Hidden, m.LogProbs, m.Nll, next, stats(output.Equilibrium));
        }
        return new LanguageModel(m, Forward, Fingerprint(name, spec, c));
    }

    /// <summary>A DEQ-TrellisNet for the trainer; memory is [Z flattened; X flattened], [B, max(k-1,1) 2 h + (k-1) d_embed].</summary>
    public static LanguageModel TrellisNet(string name, LanguageModelSpec spec, DeqTrellisNetConfig config)
    {
        var c = config with { NToken = spec.VocabSize, Schedule = WithSolvers(config.EffectiveSchedule, spec) };
        torch.manual_seed(spec.Seed);
        var m = new DeqTrellisNetLM(c);
        m.to(spec.DType).to(spec.Device);
        long kz = m.trellisnet.CarriedStates, kx = c.KernelSize - 1, zWidth = kz * 2 * c.HSize;
        LanguageModelOutput Forward(Tensor input, Tensor? packed, StepContext? context)
        {
            long b = input.shape[1];
            TrellisMemory? memory = packed is null ? null
                : new TrellisMemory(packed.narrow(1, 0, zWidth).reshape(b, kz, 2 * c.HSize), packed.narrow(1, zWidth, kx * c.NInp).reshape(b, kx, c.NInp));
            var (options, stats) = Observe(c.EffectiveSchedule, ScheduleStep(m, context));
            var output = m.Forward(input.t(), memory, options);
            var next = torch.cat([output.Memory.Z.reshape(b, -1), output.Memory.X.reshape(b, -1)], 1);
            return Output(m.decoder, output.Hidden, m.LogProbs, m.Nll, next, stats(output.Equilibrium));
        }
        return new LanguageModel(m, Forward, Fingerprint(name, spec, c));
    }
}
