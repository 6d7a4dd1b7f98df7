using System.Diagnostics;
using Deq.Models;

namespace Deq.Experiments;

/// <summary>
/// Table 3's sizes and budget at one scale. Small and medium DEQ-Transformers, a weight-tied Transformer-XL of the small
/// one's width, and a DEQ-TrellisNet against a weight-tied TrellisNet; all get the same budget.
/// </summary>
/// <param name="Small">The small DEQ-Transformer (its weight-tied baseline shares its width).</param>
/// <param name="Medium">The medium DEQ-Transformer.</param>
/// <param name="Trellis">The DEQ-TrellisNet (its weight-tied baseline shares its width).</param>
/// <param name="TransformerSchedule">The DEQ-Transformers' schedule.</param>
/// <param name="TrellisSchedule">The DEQ-TrellisNet's schedule.</param>
/// <param name="TransformerBaselineLayers">L of the weight-tied Transformer-XL (paper: 16).</param>
/// <param name="TrellisBaselineLayers">L of the weight-tied TrellisNet (paper: 70).</param>
/// <param name="Cutoffs">Adaptive embedding/softmax cutoffs for large vocabularies (used when all lie below the vocabulary size).</param>
/// <param name="Budget">Shared training budget and test subset.</param>
public sealed record Table3Settings(DeqTransformerConfig Small, DeqTransformerConfig Medium, DeqTrellisNetConfig Trellis,
    EquilibriumSchedule TransformerSchedule, EquilibriumSchedule TrellisSchedule, int TransformerBaselineLayers, int TrellisBaselineLayers,
    IReadOnlyList<int> Cutoffs, LmBudget Budget)
{
    /// <summary>The preset for a scale. CPU presets use WikiText-2-sized adaptive cutoffs [2000, 10000] (div_val 2).</summary>
    public static Table3Settings For(ExperimentScale scale) => scale switch
    {
        ExperimentScale.Smoke => new(
            new DeqTransformerConfig(DModel: 16, NHead: 2, DHead: 8, DInner: 32, SeqLen: 12, MemLen: 12, InitStd: 0.25, DivVal: 2),
            new DeqTransformerConfig(DModel: 24, NHead: 2, DHead: 12, DInner: 48, SeqLen: 12, MemLen: 12, InitStd: 0.2, DivVal: 2),
            new DeqTrellisNetConfig(NInp: 16, NHid: 16, NOut: 16, SeqLen: 12, InitStd: 0.1, DivVal: 2),
            EquilibriumSchedule.Lean(pretrainSteps: 2, unrolledLayers: 2, forwardIterations: 6, backwardIterations: 6),
            EquilibriumSchedule.Lean(pretrainSteps: 2, unrolledLayers: 2, forwardIterations: 6, backwardIterations: 6),
            TransformerBaselineLayers: 3, TrellisBaselineLayers: 4, [2000, 10000],
            new LmBudget(Steps: 4, Batch: 4, SeqLen: 12, WarmupSteps: 1, EvalBatch: 4, EvalSegments: 2)),
        ExperimentScale.Small => new(
            new DeqTransformerConfig(DModel: 32, NHead: 4, DHead: 8, DInner: 64, SeqLen: 24, MemLen: 24, InitStd: 0.18, DivVal: 2),
            new DeqTransformerConfig(DModel: 48, NHead: 4, DHead: 12, DInner: 128, SeqLen: 24, MemLen: 24, InitStd: 0.15, DivVal: 2),
            new DeqTrellisNetConfig(NInp: 24, NHid: 24, NOut: 24, SeqLen: 24, InitStd: 0.1, DivVal: 2),
            EquilibriumSchedule.Lean(pretrainSteps: 30, unrolledLayers: 2, forwardIterations: 8, backwardIterations: 8),
            EquilibriumSchedule.Lean(pretrainSteps: 30, unrolledLayers: 4, forwardIterations: 8, backwardIterations: 8),
            TransformerBaselineLayers: 6, TrellisBaselineLayers: 8, [2000, 10000],
            new LmBudget(Steps: 80, Batch: 8, SeqLen: 24, LearningRate: 4e-3, WarmupSteps: 8, EvalBatch: 10, EvalSegments: 8)),
        ExperimentScale.Large => new(
            new DeqTransformerConfig(DModel: 128, NHead: 4, DHead: 32, DInner: 512, SeqLen: 64, MemLen: 64, Dropout: 0.1, InitStd: 0.09, DivVal: 2),
            new DeqTransformerConfig(DModel: 256, NHead: 8, DHead: 32, DInner: 1024, SeqLen: 64, MemLen: 64, Dropout: 0.1, InitStd: 0.065, DivVal: 2),
            new DeqTrellisNetConfig(NInp: 128, NHid: 256, NOut: 128, SeqLen: 64, Dropout: 0.1, DropoutI: 0.1, DropoutH: 0.1, DivVal: 2),
            EquilibriumSchedule.Lean(pretrainSteps: 1000, unrolledLayers: 2, forwardIterations: 30, backwardIterations: 40),
            EquilibriumSchedule.Lean(pretrainSteps: 1000, unrolledLayers: 8, forwardIterations: 30, backwardIterations: 30),
            TransformerBaselineLayers: 16, TrellisBaselineLayers: 24, [2000, 10000],
            new LmBudget(Steps: 6000, Batch: 16, SeqLen: 64, LearningRate: 5e-4, WarmupSteps: 300, EvalBatch: 10, EvalSegments: 0)),
        ExperimentScale.Paper => new(
            DeqTransformerConfig.Wt103Small with { Cutoffs = null }, DeqTransformerConfig.Wt103Medium, DeqTrellisNetConfig.Wt103,
            DeqTransformerConfig.Wt103Medium.EffectiveSchedule, DeqTrellisNetConfig.Wt103.EffectiveSchedule,
            TransformerBaselineLayers: 16, TrellisBaselineLayers: 70, [20000, 40000, 200000],
            new LmBudget(Steps: 300_000, Batch: 56, SeqLen: 150, LearningRate: 2.5e-4, WarmupSteps: 16000, EvalBatch: 10, EvalSegments: 0)),
        _ => throw new ArgumentOutOfRangeException(nameof(scale), scale, "unknown scale"),
    };
}

/// <summary>Table 3's outcome.</summary>
/// <param name="Table">Paper beside ours.</param>
/// <param name="Runs">Our contenders, keyed by the paper row they stand beside.</param>
/// <param name="Data">Which corpus was used.</param>
/// <param name="Settings">The preset that ran.</param>
/// <param name="Run">Scale, device, machine, commit.</param>
/// <param name="Wall">Wall time of the whole experiment.</param>
public sealed record Table3Result(ResultTable Table, IReadOnlyDictionary<string, LmRun> Runs, string Data, Table3Settings Settings, RunInfo Run, TimeSpan Wall)
{
    /// <summary>The table as Markdown with the run footer.</summary>
    public string Markdown => Table.ToMarkdown(Run, Wall);

    /// <summary>Writes the Markdown to <paramref name="path"/> (atomically).</summary>
    public void Write(string path) => Table.Write(path, Run, Wall);
}

/// <summary>
/// Table 3: WikiText-103 (WikiText-2 when WT103 is absent). DEQ-Transformers and a DEQ-TrellisNet against weight-tied
/// baselines of the same width, all trained for the same steps; the paper's rows beside ours.
/// </summary>
public static class Table3WikiText
{
    /// <summary>Runs the preset for <paramref name="scale"/>.</summary>
    public static Table3Result Run(ExperimentScale scale) => Run(Table3Settings.For(scale), scale);

    /// <summary>Runs <paramref name="settings"/> on <paramref name="data"/> (the caller keeps it) or, when null, on the corpus it loads.</summary>
    public static Table3Result Run(Table3Settings settings, ExperimentScale scale, LmData? data = null)
    {
        var clock = Stopwatch.StartNew();
        var s = settings;
        using var owned = data is null ? LmData.LoadFirst("wikitext-103", "wikitext-2") : null;
        data ??= owned!;
        Progress.Report($"Table 3 ({scale}): {data.Description}");
        int vocab = data.Corpus.Vocabulary.Count;
        IReadOnlyList<int>? cutoffs = s.Cutoffs.Count > 0 && s.Cutoffs.All(c => c < vocab) ? s.Cutoffs : null;
        var corpus = data.Corpus;
        var paper = PaperResults.WikiText103;
        string Adaptive() => cutoffs is null ? "full softmax" : $"adaptive cutoffs [{string.Join(", ", cutoffs)}]";
        string T(DeqTransformerConfig c) => $"d_model {c.DModel}, {c.NHead} heads, d_inner {c.DInner}, mem {c.MemLen}, {Adaptive()}";
        string R(DeqTrellisNetConfig c) => $"d_embed {c.NInp}, h {c.HSize}, {Adaptive()}";
        string Deq(EquilibriumSchedule e) => e.Describe();

        var small = s.Small with { Cutoffs = cutoffs, Schedule = s.TransformerSchedule };
        var tiedSmall = small with { Schedule = EquilibriumSchedule.WeightTied(s.TransformerBaselineLayers) };
        var medium = s.Medium with { Cutoffs = cutoffs, Schedule = s.TransformerSchedule };
        var trellis = s.Trellis with { Cutoffs = cutoffs, Schedule = s.TrellisSchedule };
        var tiedTrellis = trellis with { Schedule = EquilibriumSchedule.WeightTied(s.TrellisBaselineLayers) };
        var plan = new (string PaperRow, string Label, string Config, Func<Deq.Training.LanguageModelSpec, Deq.Training.LanguageModel> Factory)[]
        {
            (paper[0].Model, $"{s.TrellisBaselineLayers}-layer weight-tied TrellisNet", $"{R(tiedTrellis)}", sp => DeqLanguageModels.TrellisNet("tied-trellisnet", sp, tiedTrellis)),
            (paper[1].Model, "DEQ-TrellisNet", $"{R(trellis)}; {Deq(s.TrellisSchedule)}", sp => DeqLanguageModels.TrellisNet("deq-trellisnet", sp, trellis)),
            (paper[5].Model, "DEQ-Transformer (medium)", $"{T(medium)}; {Deq(s.TransformerSchedule)}", sp => DeqLanguageModels.Transformer("deq-transformer-medium", sp, medium)),
            (paper[7].Model, $"{s.TransformerBaselineLayers}-layer weight-tied Transformer-XL (small)", $"{T(tiedSmall)}", sp => DeqLanguageModels.Transformer("tied-transformer-small", sp, tiedSmall)),
            (paper[8].Model, "DEQ-Transformer (small)", $"{T(small)}; {Deq(s.TransformerSchedule)}", sp => DeqLanguageModels.Transformer("deq-transformer-small", sp, small)),
        };
        var runs = new Dictionary<string, LmRun>();
        foreach (var (row, label, config, factory) in plan)
            runs[row] = LmTraining.TrainAndDispose(label, config, factory, corpus, s.Budget);

        string Gb(double? gb) => gb is { } g ? $"{g:0.0} GB" : "-";
        var rows = paper.Select(p => runs.TryGetValue(p.Model, out var r)
            ? new[] { p.Model, $"{p.Params} ({p.NonEmbedding})", $"{p.Metric:0.0}", Gb(p.MemoryGB), $"{r.Label} ({r.Config})", $"{LmTraining.Size(r.Parameters)} ({LmTraining.Size(r.NonEmbedding)})", $"{r.TestPerplexity:0.0}" }
            : new[] { p.Model, $"{p.Params} ({p.NonEmbedding})", $"{p.Metric:0.0}", Gb(p.MemoryGB), "not run (Deq has no untied Transformer-XL)", "-", "-" }).ToList();
        var b = s.Budget;
        var corpusName = data.Synthetic ? "synthetic data" : corpus.Name;
        var notes = new List<string>
        {
            $"Data: {data.Description}." + (corpus.Name == "wikitext-2" ? " WikiText-103 was not found, so ours run on WikiText-2 (2M training tokens, 33,278 words): not comparable to the paper's WT103 numbers." : ""),
            $"Ours: every model trained for {b.Steps} steps (batch {b.Batch}, segments of {b.SeqLen}: {(long)b.Steps * b.Batch * b.SeqLen:N0} training tokens, " +
            $"a fraction of one epoch), Adam at {b.LearningRate:G3}; test perplexity on the first {(b.EvalSegments > 0 ? $"{b.EvalSegments} segments of the test split (batch {b.EvalBatch}, {runs.Values.First().TestTokens:N0} tokens)" : "whole test split")}.",
            "The paper's models have 110M-180M parameters and train for about 300,000 steps on 103M tokens; ours are CPU-sized and see a sliver of the data, " +
            "so our perplexities are orders of magnitude above the paper's. Compare ours with each other (same width, same budget), not with the paper.",
            $"Weight-tied baselines are the DEQ's own f applied L times with backprop through all of them (paper: 16-layer weight-tied Transformer-XL, 70-layer TrellisNet with auxiliary loss). " +
            "Deq has no untied (per-layer weights) Transformer-XL, so those paper rows have no counterpart here.",
            $"Our medium DEQ-Transformer uses the same {Adaptive()} as every model of ours, so it stands beside the paper's adaptive-embedding medium row.",
            "Memory: see Table 2 and the memory benchmark for training memory; this table reports perplexity only.",
        };
        var title = $"Table 3: WikiText-103 (ours on {corpusName})";
        var table = new ResultTable(title,
            ["model (paper)", "paper: params (non-emb.)", "paper: test ppl", "paper: memory†", "ours: model", "ours: params (non-emb.)", "ours: test ppl"],
            rows, notes);
        return new Table3Result(table, runs, data.Description, s, RunInfo.Capture(scale, ExperimentDevice.Default), clock.Elapsed);
    }
}
