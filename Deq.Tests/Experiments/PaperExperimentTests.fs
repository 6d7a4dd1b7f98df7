module Deq.Tests.Experiments.PaperExperimentTests

open System
open Expecto
open Deq.Models
open Deq.Experiments

// Smaller than the Smoke presets: each run takes a few seconds on a 2-core CPU.
let private tinyTransformer seqLen =
    DeqTransformerConfig(SeqLen = seqLen, MemLen = 0, InitStd = 0.25,
                         Schedule = EquilibriumSchedule.Lean(forwardIterations = 4, backwardIterations = 4))

let private finite (x: float) = Double.IsFinite x

[<Tests>]
let tests =
    testList "paper experiments" [
        test "presets exist for every scale; Paper is the paper's setting" {
            for s in Enum.GetValues<ExperimentScale>() do
                Expect.isGreaterThan (CopyMemorySettings.For s).Steps 0 "copy memory"
                Expect.isGreaterThan (ConvergenceSettings.For s).Steps 0 "convergence"
                Expect.isGreaterThan (RuntimeSettings.For s).Repeats 0 "runtime"
            let p = CopyMemorySettings.For ExperimentScale.Paper
            Expect.equal (p.T, p.TrainSize, p.TestSize) (400, 20000, 2000) "Table 1 at paper scale: T = 400, 20K / 2K"
            let r = RuntimeSettings.For ExperimentScale.Paper
            Expect.equal (r.TransformerPaperDepth, r.TrellisNetPaperDepth) (18, 70) "Table 4 depths"
            Expect.isLessThan (CopyMemorySettings.For ExperimentScale.Small).T 400 "small scale reduces T"
        }

        test "Table 1: five trained models (TCN included), paper column filled, finite losses, C3 untested at small T" {
            let s = CopyMemorySettings(T = 4, TrainSize = 16, TestSize = 8, BatchSize = 8, Steps = 2, LearningRate = 1e-3,
                                       Model = tinyTransformer 24, UnrolledLayers = 2, EvalPoints = 1)
            let r = CopyMemoryExperiment.Run(s, ExperimentScale.Smoke)
            Expect.equal r.Rows.Count 5 "DEQ, weight-tied, TCN, LSTM, GRU"
            Expect.equal r.Table.Rows.Count 5 "one table row each"
            Expect.isTrue (r.Rows |> Seq.exists (fun row -> row.Model.StartsWith "TCN")) "the TCN ran"
            let verdict = Seq.exactlyOne (Deq.Tests.Models.ModelFixtures.required "verdicts" r.Table.Verdicts)
            Expect.equal (verdict.Claim, verdict.Outcome) ("C3", ClaimOutcome.NotTested) "T = 4 cannot test C3"
            Expect.stringContains r.Markdown "**C3**" "the table ends with the verdict"
            Expect.equal r.Report.Rows.Count 5 "the JSON report has every row"
            Expect.equal r.PaperFinalLosses.Count 4 "the paper's four final losses as chart series"
            for row in r.Table.Rows do Expect.equal row.Length r.Table.Columns.Length "row width"
            for row in r.Rows do
                Expect.isTrue (finite row.TestLoss && row.TestLoss > 0.0) $"{row.Model}: finite loss"
                Expect.isGreaterThan row.Parameters 0L "parameters counted"
            let deq = r.Rows |> Seq.find (fun row -> row.Model = "DEQ-Transformer")
            for row in r.Rows do Expect.isLessThanOrEqual row.Parameters deq.Parameters $"{row.Model} is no bigger than the DEQ"
            Expect.isSome (Option.ofNullable deq.MeanForwardSteps) "DEQ reports Broyden steps"
            let md = r.Markdown
            for paper in [ "3.5E-6"; "2.7E-5"; "0.0501"; "0.0491"; "14K" ] do Expect.stringContains md paper "paper value"
            Expect.stringContains md "scale `smoke`" "footer"
            Expect.isTrue (r.TestLossCurves |> Seq.forall (fun c -> c.AllFinite && c.X.Length = 1)) "curves"
        }

        test "Figure 2: solver steps recorded, residual traces finite for both solvers before and after" {
            let model = DeqTransformerConfig(SeqLen = 6, MemLen = 6, InitStd = 0.25,
                                             Schedule = EquilibriumSchedule.Broyden(forwardIterations = 4, backwardIterations = 4))
            let s = ConvergenceSettings(model, BatchSize = 2, Steps = 3, LearningRate = 1e-3, Window = 2, TraceEvaluations = 5,
                                        TraceBatch = 2, MaxTrainTokens = 2000)
            let r = ConvergenceExperiment.Run(s, ExperimentScale.Smoke)
            Expect.equal r.ForwardSteps.X [| 2.0; 3.0 |] "one point per window, and the last step"
            Expect.isTrue (r.ForwardSteps.Y |> Array.forall (fun v -> v >= 1.0 && v <= 4.0)) "forward steps within the limit"
            Expect.isTrue (r.BackwardSteps.Y |> Array.forall (fun v -> v >= 1.0 && v <= 4.0)) "backward solves ran"
            Expect.equal r.Residuals.Count 4 "Broyden and plain iteration, start and end"
            for c in r.Residuals do
                Expect.equal c.Y.Length 5 $"{c.Name}: one residual per evaluation"
                Expect.isTrue (c.AllFinite && c.Y |> Array.forall (fun v -> v >= 0.0)) $"{c.Name}: finite"
            Expect.isTrue (r.TrainLoss.AllFinite) "loss finite"
            Expect.equal r.Verdict.Claim "C5" "Figure 2 decides C5"
            Expect.equal r.Table.Rows.Count 2 "start and end rows"
            Expect.stringContains r.Markdown "**C5**" "verdict line"
        }

        test "Table 4: matched and paper depths per family, finite positive ratios, paper ratios present" {
            let s = RuntimeSettings(tinyTransformer 6,
                                    DeqTrellisNetConfig(SeqLen = 6, Schedule = EquilibriumSchedule.Lean(forwardIterations = 4, backwardIterations = 4)),
                                    BatchSize = 2, Warmup = 0, Repeats = 1, MatchCap = 6, TransformerPaperDepth = 3, TrellisNetPaperDepth = 5)
            let r = RuntimeExperiment.Run(s, ExperimentScale.Smoke)
            Expect.equal (r.Rows |> Seq.map (fun row -> row.Family) |> Seq.distinct |> List.ofSeq) [ "Transformer"; "TrellisNet" ] "both families"
            Expect.isTrue (r.Rows |> Seq.exists (fun row -> row.Family = "TrellisNet" && row.Depth = 5)) "paper depth row"
            for row in r.Rows do
                Expect.isTrue (finite row.TrainRatio && row.TrainRatio > 0.0 && finite row.InferenceRatio && row.InferenceRatio > 0.0) "ratios"
                Expect.isTrue (row.Depth >= 1 && row.Depth <= 6) "depth within the cap"
            for row in r.Table.Rows do Expect.equal row.Length r.Table.Columns.Length "row width"
            for paper in [ "2.82x"; "1.76x"; "2.40x"; "1.64x" ] do Expect.stringContains r.Markdown paper "paper ratio"
            let verdict = Seq.exactlyOne (Deq.Tests.Models.ModelFixtures.required "verdicts" r.Table.Verdicts)
            Expect.equal (verdict.Claim, verdict.Outcome) ("C4", ClaimOutcome.NotTested) "untrained models leave C4 untested"
            Expect.equal r.RatioSeries.Count 4 "paper and ours, training and inference"
        }
    ]
