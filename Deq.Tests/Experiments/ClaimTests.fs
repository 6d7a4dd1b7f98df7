module Deq.Tests.Experiments.ClaimTests

open System
open System.IO
open Expecto
open Deq.Experiments

let private pair d b = ClaimPair("DEQ", d, "weight-tied", b)
let private outcome (v: ClaimVerdict) = v.Outcome

[<Tests>]
let tests =
    testList "Experiments.Claims" [
        test "C1: within 3% holds, beyond does not, above the target perplexity is untested" {
            let v = Claims.C1([| pair 151.2 149.8 |], 200.0)
            Expect.equal v.Outcome ClaimOutcome.Holds "151.2 vs 149.8 is +0.9%"
            Expect.stringContains v.Line "DEQ 151.2 against weight-tied 149.8 (+0.9%, within 3%): holds" "the issue's example line"
            Expect.equal (outcome (Claims.C1([| pair 156.0 150.0 |], 200.0))) ClaimOutcome.DoesNotHold "+4% is beyond 3%"
            Expect.equal (outcome (Claims.C1([| pair 120.0 150.0 |], 200.0))) ClaimOutcome.Holds "a better DEQ matches"
            let untested = Claims.C1([| pair 894.0 742.5 |], 200.0)
            Expect.equal untested.Outcome ClaimOutcome.NotTested "the committed small run: too little trained"
            Expect.stringContains untested.Line "not tested at this scale" "says so"
            Expect.equal (outcome (Claims.C1([| pair 150.0 150.0 |], 200.0, true))) ClaimOutcome.NotTested "synthetic data"
            Expect.equal (outcome (Claims.C1([| pair 150.0 150.0; pair 170.0 150.0 |], 200.0))) ClaimOutcome.DoesNotHold "every tested pair must hold"
            Expect.equal (outcome (Claims.C1([| pair 150.0 150.0; pair 900.0 800.0 |], 200.0))) ClaimOutcome.Holds "an untested pair does not decide"
        }

        test "C2: at most half the baseline's memory holds; unmeasured is untested" {
            Expect.equal (outcome (Claims.C2([| pair 1.2e9 8.5e9 |]))) ClaimOutcome.Holds "the paper's 14%"
            Expect.equal (outcome (Claims.C2([| pair 4.25e8 4.0e8 |]))) ClaimOutcome.DoesNotHold "DEQ above the baseline"
            Expect.equal (outcome (Claims.C2([| pair 0.0 4.0e8 |]))) ClaimOutcome.NotTested "a missing figure"
            Expect.stringContains (Claims.C2([| pair 1.2e9 8.5e9 |])).Evidence "(14%)" "the ratio"
        }

        test "C3: the DEQ solves, LSTM and GRU fail, at T >= 100" {
            let deq = CopyOutcome("DEQ", 3.5e-6, 1.0)
            let lstm = CopyOutcome("LSTM", 0.0501, 0.9)
            let gru = CopyOutcome("GRU", 0.0491, 0.9)
            Expect.equal (outcome (Claims.C3(400, deq, [| lstm; gru |]))) ClaimOutcome.Holds "the paper's numbers"
            Expect.equal (outcome (Claims.C3(20, deq, [| lstm; gru |]))) ClaimOutcome.NotTested "T = 20 is too short"
            Expect.equal (outcome (Claims.C3(100, CopyOutcome("DEQ", 2e-3, 1.0), [| lstm; gru |]))) ClaimOutcome.DoesNotHold "loss above 1e-3"
            Expect.equal (outcome (Claims.C3(100, CopyOutcome("DEQ", 1e-4, 0.9995), [| lstm; gru |]))) ClaimOutcome.DoesNotHold "one digit wrong"
            Expect.equal (outcome (Claims.C3(100, deq, [| CopyOutcome("LSTM", 1e-5, 1.0); gru |]))) ClaimOutcome.DoesNotHold "the LSTM solved it too"
        }

        test "C4: slower by more than 1x and at most 3x; untrained is untested" {
            Expect.equal (outcome (Claims.C4([| RuntimeRatio("t", 2.82); RuntimeRatio("i", 1.76) |], 100))) ClaimOutcome.Holds "the paper's ratios"
            Expect.equal (outcome (Claims.C4([| RuntimeRatio("t", 0.68); RuntimeRatio("i", 1.03) |], 100))) ClaimOutcome.DoesNotHold "DEQ faster"
            Expect.equal (outcome (Claims.C4([| RuntimeRatio("t", 9.66) |], 100))) ClaimOutcome.DoesNotHold "far slower"
            Expect.equal (outcome (Claims.C4([| RuntimeRatio("t", 2.0) |], 0))) ClaimOutcome.NotTested "untrained models"
        }

        test "C5: fewer f evaluations to a common residual and a growing step count" {
            let broyden = [| 1.0; 0.1; 0.01; 0.001 |]
            let plain = [| 1.0; 0.5; 0.25; 0.12; 0.06; 0.03; 0.015; 0.008 |]
            let reach = Claims.EvaluationsToCommonResidual(broyden, plain)
            let r = Deq.Tests.Models.ModelFixtures.required "both traces are non-empty" reach
            Expect.equal (r.Broyden, r.Plain, r.Target) (4, 8, 0.008) "Broyden 4, plain 8 evaluations to 0.008"
            let windows = [| 10.0; 20.0; 30.0; 40.0 |]
            let v = Claims.C5(broyden, plain, windows, [| 30.0; 8.0; 9.0; 12.0 |], 10, 10, 40)
            Expect.equal v.Outcome ClaimOutcome.Holds "the pretraining window (30 steps of the unrolled net) is skipped: 8 -> 12 grows"
            Expect.equal (outcome (Claims.C5(broyden, plain, windows, [| 5.0; 12.0; 9.0; 8.0 |], 10, 10, 40))) ClaimOutcome.DoesNotHold "falling step count"
            Expect.equal (outcome (Claims.C5(plain, broyden, windows, [| 5.0; 8.0; 9.0; 12.0 |], 10, 10, 40))) ClaimOutcome.DoesNotHold "plain faster than Broyden"
            Expect.equal (outcome (Claims.C5(broyden, plain, windows, [| 5.0; 8.0; 9.0; 12.0 |], 10, 10, 0))) ClaimOutcome.NotTested "untrained"
            Expect.equal (outcome (Claims.C5(broyden, plain, [| 10.0; 20.0 |], [| 5.0; 8.0 |], 10, 10, 20))) ClaimOutcome.NotTested "one window after pretraining"
        }

        test "C6: small ε within 3% of the tightest, the loosest ε more than 10% worse" {
            let sweep = [| TolerancePoint(1e-4, 100.0); TolerancePoint(1e-2, 101.0); TolerancePoint(0.03, 102.0); TolerancePoint(0.3, 115.0); TolerancePoint(1.0, 180.0) |]
            Expect.equal (outcome (Claims.C6(sweep, 100))) ClaimOutcome.Holds "flat then rising"
            let flat = [| TolerancePoint(1e-4, 100.0); TolerancePoint(1e-2, 100.5); TolerancePoint(1.0, 104.0) |]
            Expect.equal (outcome (Claims.C6(flat, 100))) ClaimOutcome.DoesNotHold "a large ε does not hurt"
            let early = [| TolerancePoint(1e-4, 100.0); TolerancePoint(0.03, 110.0); TolerancePoint(1.0, 200.0) |]
            Expect.equal (outcome (Claims.C6(early, 100))) ClaimOutcome.DoesNotHold "ε = 0.03 already costs 10%"
            Expect.equal (outcome (Claims.C6([| TolerancePoint(1e-4, 100.0); TolerancePoint(1e-2, 100.0); TolerancePoint(0.1, 120.0) |], 100))) ClaimOutcome.NotTested "no ε >= 0.3"
            Expect.equal (outcome (Claims.C6(sweep, 0))) ClaimOutcome.NotTested "untrained"
        }

        test "a smoke run states no verdict; other scales keep theirs" {
            let v = Claims.C2([| pair 1.2e9 8.5e9 |])
            let smoke = Claims.AtScale(ExperimentScale.Smoke, v)
            Expect.equal smoke.Outcome ClaimOutcome.NotTested "smoke"
            Expect.stringContains smoke.Evidence v.Evidence "the figures stay"
            Expect.equal (Claims.AtScale(ExperimentScale.Small, v)) v "small keeps the verdict"
        }

        test "a report round-trips through JSON with its rows, verdicts and run" {
            let table = ResultTable("T", [| "a" |], [| [| "1" |] |], [| "note" |], [| Claims.C2([| pair 1.0e8 4.0e8 |]) |])
            let run = RunInfo(ExperimentScale.Large, "cpu", "test machine", "abc1234", DateTime(2026, 12, 1, 0, 0, 0, DateTimeKind.Utc))
            let row = ResultRow("DEQ", Nullable 1000L, "test perplexity", Nullable 150.0, TrainingMemoryBytes = Nullable 100000000L, Steps = Nullable 10)
            let report = ExperimentReport.Of("table2-ptb", table, run, TimeSpan.FromMinutes 2.0, [| row |])
            let json = report.ToJson()
            for key in [ "\"scale\": \"large\""; "\"commit\": \"abc1234\""; "\"device\": \"cpu\""; "\"trainingMemoryBytes\": 100000000"; "\"outcome\": \"Holds\"" ] do
                Expect.stringContains json key "JSON field"
            let back = ExperimentReport.FromJson json
            Expect.equal back.Rows.[0] row "row"
            Expect.equal back.Verdicts.[0] report.Verdicts.[0] "verdict"
            Expect.equal (back.Scale, back.WallSeconds) ("large", 120.0) "run"
            Expect.stringContains (table.ToMarkdown(run, TimeSpan.FromMinutes 2.0)) "**C2**" "the Markdown ends with the verdict"
        }

        test "outputs go to a folder per scale; the index lists each scale with its verdicts" {
            let root = Path.Combine(Path.GetTempPath(), $"deq-figures-{Guid.NewGuid():N}")
            let saved = Environment.GetEnvironmentVariable PaperFigures.Variable
            try
                Environment.SetEnvironmentVariable(PaperFigures.Variable, root)
                let large = PaperFigures.PathOf("table2-ptb.md", ExperimentScale.Large)
                let small = PaperFigures.PathOf("table2-ptb.md", ExperimentScale.Small)
                Expect.equal large (Path.Combine(root, "large", "table2-ptb.md")) "large folder"
                Expect.notEqual large small "a small run writes elsewhere"
                File.WriteAllText(large, "# large")
                File.WriteAllText(small, "# small")
                let table = ResultTable("T", [| "a" |], [| [| "1" |] |], [||], [| Claims.C2([| pair 1.0e8 4.0e8 |]) |])
                let run = RunInfo(ExperimentScale.Large, "cpu", "m", "abc1234", DateTime.UtcNow)
                let path = PaperFigures.WriteReport(ExperimentReport.Of("table2-ptb", table, run, TimeSpan.FromMinutes 3.0, [||]))
                Expect.equal path (Path.Combine(root, "large", "table2-ptb.json")) "the report goes to its scale's folder"
                Expect.equal (File.ReadAllText large) "# large" "the small write left large alone"
                PaperFigures.WriteIndex root
                let index = File.ReadAllText(Path.Combine(root, "README.md"))
                for s in [ "## Scale `large`"; "## Scale `small`"; "large/table2-ptb.md"; "small/table2-ptb.md"; "3.0 min"; "table2-ptb: C2:" ] do
                    Expect.stringContains index s "index entry"
                Expect.isLessThan (index.IndexOf "Scale `large`") (index.IndexOf "Scale `small`") "large (the committed results) first"
            finally
                Environment.SetEnvironmentVariable(PaperFigures.Variable, saved)
                if Directory.Exists root then Directory.Delete(root, true)
        }
    ]
