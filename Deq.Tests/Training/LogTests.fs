module Deq.Tests.Training.LogTests

open System
open System.IO
open System.Text.Json
open Expecto
open Deq.Training
open Deq.FSharp
open Deq.Tests.Training.TrainerTests

let private records () =
    let all = Collections.Generic.List<LogRecord>()
    toyTask 1L |> Trainer.run (toyOptions 5L None false) all.Add |> ignore
    List.ofSeq all

[<Tests>]
let tests =
    testList "training log" [
        test "a record per step plus the final evaluation, with lr, grad norm, wall time and memory" {
            let rs = records ()
            Expect.equal (rs |> List.map (fun r -> r.Phase, r.Step)) ([ for s in 1L .. 6L -> Phase.Train, s ] @ [ Phase.Valid, 6L ]) "sequence"
            let first = rs.Head
            Expect.floatClose Accuracy.veryHigh first.LearningRate.Value 0.025 "warmup 1/2 of 0.05"
            Expect.isTrue (first.GradNorm.Value > 0.0) "grad norm"
            Expect.floatClose Accuracy.veryHigh first.Perplexity (exp first.Loss) "ppl = exp(loss)"
            if OperatingSystem.IsLinux() then
                Expect.isTrue (first.Memory.RssBytes.Value > 0L && first.Memory.PeakRssBytes.Value >= first.Memory.RssBytes.Value) "RSS from /proc"
            Expect.isNone (LogRecord.solver first) "no solver stats from a plain model"
        }

        test "JSON lines parse, omit absent solver fields, and show them when reported" {
            let r = (records ()).Head
            let doc = JsonDocument.Parse(LogSinks.ToJson r)
            Expect.equal (doc.RootElement.GetProperty("phase").GetString()) "train" "phase"
            Expect.equal (doc.RootElement.GetProperty("step").GetInt64()) 1L "step"
            Expect.isFalse (doc.RootElement.TryGetProperty("solver") |> fst) "absent solver omitted"
            let withSolver = LogRecord(r.Phase, r.Step, r.TotalSteps, r.Loss, r.Perplexity, r.LearningRate, r.GradNorm, r.Tokens,
                                       SolverStats(ForwardSteps = 12, ForwardResidual = 1e-4), r.WallSeconds, r.Memory)
            let s = JsonDocument.Parse(LogSinks.ToJson withSolver).RootElement.GetProperty("solver")
            Expect.equal (s.GetProperty("forward_steps").GetInt32()) 12 "forward steps"
            Expect.isFalse (s.TryGetProperty("backward_steps") |> fst) "absent backward omitted"
            use w = new StringWriter()
            LogSinks.jsonLines w r
            Expect.equal (w.ToString().Trim().Split('\n').Length) 1 "one line per record"
        }

        test "console: redirected output prints plain lines every N steps, a terminal redraws one bar line" {
            let rs = records ()
            use plain = new StringWriter()
            let sink = LogSinks.consoleWith { LogSinks.consoleDefaults with Writer = Some plain; Every = 4; Interactive = Some false }
            rs |> List.iter sink
            let lines = plain.ToString().Split('\n', StringSplitOptions.RemoveEmptyEntries)
            Expect.isFalse (plain.ToString().Contains "\r") "no carriage returns"
            Expect.equal (lines |> Array.map (fun l -> l.Split(' ', StringSplitOptions.RemoveEmptyEntries).[..1] |> String.concat " "))
                [| "step 1/6"; "step 4/6"; "step 6/6"; "valid 6/6" |] "first, every 4th, last, evaluation"
            use tty = new StringWriter()
            let bar = LogSinks.consoleWith { LogSinks.consoleDefaults with Writer = Some tty; Interactive = Some true }
            rs |> List.iter bar
            Expect.stringContains (tty.ToString()) "\r[" "bar redrawn in place"
            Expect.stringContains (tty.ToString()) "[########################]" "full bar at the end"
        }

        test "an observer (a notebook's live display) receives every record" {
            let seen = Collections.Generic.List<LogRecord>()
            let observer = { new IObserver<LogRecord> with
                                member _.OnNext r = seen.Add r
                                member _.OnError _ = ()
                                member _.OnCompleted() = () }
            Trainer.Run(toyTask 1L, toyOptions 5L None false, LogSinks.Observer observer) |> ignore
            Expect.equal seen.Count 7 "six steps and one evaluation"
        }
    ]
