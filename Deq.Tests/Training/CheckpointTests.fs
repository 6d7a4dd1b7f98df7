module Deq.Tests.Training.CheckpointTests

open System
open System.IO
open Expecto
open Deq.Training
open Deq.FSharp
open Deq.Tests.Support.Files
open Deq.Tests.Training.TrainerTests

/// A finished 6-step toy run's checkpoint in d.
let private written (d: TempDir) =
    let path = d.File "toy.ckpt"
    Trainer.Run(toyTask 1L, toyOptions 5L (Some path) false) |> ignore
    path

/// Resuming from `path` must fail with 'E naming the fragments, and leave the file as it was.
let private refuses<'E when 'E :> exn> (path: string) (options: TrainOptions) fragments =
    let before = File.ReadAllBytes path
    throwsWith<'E> fragments (fun () -> Trainer.Run(toyTask 1L, options) |> ignore) |> ignore
    Expect.equal (File.ReadAllBytes path) before "checkpoint untouched"

[<Tests>]
let tests =
    testList "checkpoints" [
        test "written atomically: no temporary file left, header verified, step and fingerprint readable" {
            use d = new TempDir()
            let path = written d
            Expect.equal (Directory.GetFiles d.Path |> Array.map Path.GetFileName) [| "toy.ckpt" |] "only the checkpoint"
            let info = Trainer.Inspect path
            let fp = info.Fingerprint
            Expect.equal (info.Step, info.TotalSteps) (6L, 6L) "step and total"
            Expect.equal fp.["train.lr"] "0.05" "fingerprint field"
            Expect.equal fp.["task"] "toy" "task field"
        }

        test "another configuration: the fields that differ are named, nothing is overwritten" {
            use d = new TempDir()
            let path = written d
            let other = TrainOptions(Steps = 6, LearningRate = 0.01, WarmupSteps = 2, ClipNorm = 0.5, Seed = 5L, CheckpointPath = path, Resume = true)
            refuses<InvalidOperationException> path other [ "another configuration"; "train.lr: checkpoint 0.05, now 0.01"; "train.clip" ]
        }

        test "a configuration printed as a record is compared member by member" {
            let saved = readOnlyDict [ "model.config", "Cfg { A = 1, S = Sched { x }, L = [1, 2] }"; "train.lr", "0.1" ]
            let now = readOnlyDict [ "model.config", "Cfg { A = 1, S = Sched { y }, L = [1, 2] }"; "train.lr", "0.1" ]
            Expect.equal (List.ofSeq (Fingerprint.Diff(saved, now))) [ "model.config.S: checkpoint Sched { x }, now Sched { y }" ] "only the member that differs"
            Expect.equal (List.ofSeq (Fingerprint.Diff(saved, readOnlyDict [ "train.lr", "0.1" ]))) [ "model.config: checkpoint Cfg { A = 1, S = Sched { x }, L = [1, 2] }, now (absent)" ] "absent field"
        }

        test "a truncated, corrupted or foreign file is a clear error, never a crash in TorchSharp" {
            use d = new TempDir()
            let path = written d
            let good = File.ReadAllBytes path
            File.WriteAllBytes(path, good.[.. good.Length - 100])
            refuses<InvalidDataException> path (toyOptions 5L (Some path) true) [ path; "truncated" ]
            let flipped = Array.copy good
            flipped.[good.Length - 10] <- flipped.[good.Length - 10] ^^^ 1uy
            File.WriteAllBytes(path, flipped)
            refuses<InvalidDataException> path (toyOptions 5L (Some path) true) [ "corrupted"; "sha256" ]
            File.WriteAllText(path, "not a checkpoint")
            refuses<InvalidDataException> path (toyOptions 5L (Some path) true) [ "not a Deq checkpoint" ]
            File.WriteAllBytes(path, [||])
            refuses<InvalidDataException> path (toyOptions 5L (Some path) true) [ "not a Deq checkpoint" ]
        }

        test "resuming a finished run takes no steps and still evaluates" {
            use d = new TempDir()
            let path = written d
            let r = Trainer.Run(toyTask 1L, toyOptions 5L (Some path) true)
            Expect.equal (r.Step, r.ResumedFrom, r.Interrupted) (6L, 6L, false) "nothing left to do"
            Expect.isSome (TrainResult.valid r) "evaluated"
            Expect.isNone (TrainResult.lastLoss r) "no step taken"
        }
    ]
