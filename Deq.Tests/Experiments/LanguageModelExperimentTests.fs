module Deq.Tests.Experiments.LanguageModelExperimentTests

open System
open Expecto
open TorchSharp
open Deq.Experiments

let private finitePpl (what: string) (ppl: float) =
    Expect.isTrue (Double.IsFinite ppl && ppl >= 1.0) $"{what}: perplexity {ppl} should be finite and at least 1"

/// A small synthetic corpus, so the tests neither need nor spend time on PTB/WikiText.
let private synthetic () = new LmData(LmData.SyntheticCorpus(300, 3000, 1), true, "synthetic (test)")

let private hasCell (table: ResultTable) (cell: string) (what: string) =
    Expect.isTrue (table.Rows |> Seq.exists (fun r -> Array.contains cell r)) $"{what}: the table should hold the cell '{cell}'"

[<Tests>]
let tests =
    testList "Experiments.LanguageModels" [
        test "synthetic corpus is deterministic and sized as asked" {
            use a = LmData.SyntheticCorpus(50, 1000, 3)
            use b = LmData.SyntheticCorpus(50, 1000, 3)
            Expect.equal a.Train.shape [| 1000L |] "train length"
            Expect.equal a.Test.shape [| 100L |] "test length"
            Expect.equal a.Vocabulary.Count 50 "vocabulary"
            Expect.isTrue (a.Train.eq(b.Train).all().item<bool>()) "same seed, same stream"
            Expect.isTrue (a.Train.max().item<int64>() < 50L && a.Train.min().item<int64>() >= 0L) "ids inside the vocabulary"
        }

        test "Table 2 at smoke scale: two rows beside the paper's, finite perplexities" {
            use data = synthetic ()
            let r = Table2Ptb.Run(Table2Settings.For ExperimentScale.Smoke, ExperimentScale.Smoke, data)
            Expect.equal r.Table.Rows.Count 2 "two rows"
            Expect.equal r.Table.Columns.Length 8 "eight columns"
            hasCell r.Table "57.0" "paper 60-layer TrellisNet"
            hasCell r.Table "57.1" "paper DEQ-TrellisNet"
            hasCell r.Table "8.5 GB" "paper memory"
            let deqMem = Deq.Tests.Models.ModelFixtures.required "DEQ memory" r.DeqMemory
            let tiedMem = Deq.Tests.Models.ModelFixtures.required "weight-tied memory" r.WeightTiedMemory
            Expect.isGreaterThan deqMem.PeakBytes 0L "DEQ peak measured"
            Expect.equal tiedMem.ForwardSteps 4 "the weight-tied core is unrolled L = 4 times"
            finitePpl "DEQ" r.Deq.TestPerplexity
            finitePpl "weight-tied" r.WeightTied.TestPerplexity
            Expect.isGreaterThan r.Deq.NonEmbedding 0L "the core has parameters"
            Expect.equal r.Deq.NonEmbedding r.WeightTied.NonEmbedding "same width, same core"
            Expect.stringContains r.Markdown "scale `smoke`" "footer"
            let verdicts = Deq.Tests.Models.ModelFixtures.required "verdicts" r.Table.Verdicts
            Expect.equal (verdicts |> Seq.map (fun v -> v.Claim) |> List.ofSeq) [ "C1"; "C2" ] "Table 2 tests C1 and C2"
            Expect.equal verdicts.[0].Outcome ClaimOutcome.NotTested "synthetic data leaves C1 untested"
            Expect.stringContains verdicts.[1].Evidence " MB against " "memory was measured, and the figures stay in the evidence"
            Expect.equal verdicts.[1].Outcome ClaimOutcome.NotTested "but a smoke run decides nothing"
            Expect.equal (r.Report.Rows |> Seq.map (fun row -> row.TrainingMemoryBytes.HasValue) |> List.ofSeq) [ true; true ] "JSON rows carry the memory"
        }

        test "Table 3 at smoke scale: every paper row, seven of ours with memory, finite perplexities" {
            use data = synthetic ()
            let r = Table3WikiText.Run(Table3Settings.For ExperimentScale.Smoke, ExperimentScale.Smoke, data)
            Expect.equal r.Table.Rows.Count PaperResults.WikiText103.Count "one row per paper row"
            for p in PaperResults.WikiText103 do hasCell r.Table (sprintf "%.1f" p.Metric) p.Model
            Expect.equal r.Runs.Count 7 "five contenders and two untied Transformer-XLs"
            for KeyValue(row, run) in r.Runs do finitePpl row run.TestPerplexity
            Expect.equal (Set.ofSeq r.Memory.Keys) (Set.ofSeq r.Runs.Keys) "training memory for every row of ours"
            let untied = r.Runs.[PaperResults.WikiText103.[6].Model]
            let deqSmall = r.Runs.[PaperResults.WikiText103.[8].Model]
            Expect.isLessThan (abs (float (untied.NonEmbedding - deqSmall.NonEmbedding)) / float deqSmall.NonEmbedding) 0.25 "the untied stack is about the DEQ's size"
            Expect.equal (r.Report.Rows.Count) 7 "JSON rows"
            Expect.stringContains r.Table.Title "ours on" "the title names our corpus"
        }

        test "Figure 3 at smoke scale: one point per setting, fewer steps at looser tolerances" {
            use data = synthetic ()
            let s = Figure3Settings.For ExperimentScale.Smoke
            let r = Figure3Tolerance.Run(s, ExperimentScale.Smoke, data)
            Expect.equal r.ByTolerance.Count s.Tolerances.Count "tolerance points"
            Expect.equal r.ByLimit.Count s.Limits.Count "limit points"
            Expect.equal r.Table.Rows.Count (s.Tolerances.Count + s.Limits.Count) "table rows"
            for p in Seq.append r.ByTolerance r.ByLimit do finitePpl $"ε {p.Tolerance} limit {p.Limit}" p.Perplexity
            let steps = r.ByTolerance |> Seq.map (fun p -> p.MeanSteps) |> Array.ofSeq
            Expect.isTrue (steps |> Array.pairwise |> Array.forall (fun (a, b) -> b <= a)) $"steps should not grow as ε loosens: %A{steps}"
            for p in r.ByLimit do Expect.isLessThanOrEqual p.MeanSteps (float p.Limit) "the limit bounds the steps"
        }
    ]
