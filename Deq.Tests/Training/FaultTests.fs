/// Bad options, non-finite steps, and what the trainer does with the files it is given (issue #16).
module Deq.Tests.Training.FaultTests

open System
open System.IO
open Expecto
open FsCheck
open TorchSharp
open Deq.Training
open Deq.FSharp
open Deq.Tests.Support.Files
open Deq.Tests.Support.Generators
open Deq.Tests.Training.TrainerTests

/// A one-parameter-set task whose loss at step k is `loss k w` (w: a 2 -> 1 linear layer).
let private taskOf (dtype: torch.ScalarType) (loss: int64 -> torch.nn.Module -> torch.Tensor) =
    torch.manual_seed 3L |> ignore
    let lin = torch.nn.Linear(2L, 1L, dtype = dtype)
    let x = torch.ones([| 4L; 2L |], dtype = dtype)
    let step (ctx: StepContext) = StepOutput(loss ctx.Step lin)
    lin, TrainingTask.create lin step |> TrainingTask.withFingerprint [ "task", "fault" ], x

let private mse (x: torch.Tensor) (m: torch.nn.Module) =
    let lin = m :?> TorchSharp.Modules.Linear
    (lin.call x - 1.0).square().mean()

/// The records a run logs, and how it ended.
let private logged (task: TrainingTask) (options: TrainOptions) =
    let records = Collections.Generic.List<LogRecord>()
    let result = task |> Trainer.run options records.Add
    result, List.ofSeq records

[<Tests>]
let tests =
    testList "trainer faults" [
        test "clip 0 disables clipping on float32 without overflow; the norm is still measured" {
            let run clip =
                let lin, task, x = taskOf torch.ScalarType.Float32 (fun _ m -> mse (torch.ones([| 4L; 2L |]) * 3.0) m)
                let _, records = logged task (TrainOptions(Steps = 3, LearningRate = 0.1, ClipNorm = clip))
                flat lin, records |> List.map (fun r -> r.GradNorm.Value)
            let unclipped, norms = run 0.0
            let huge, hugeNorms = run 1e30
            Expect.isTrue (sameTensor unclipped huge) "no clipping = clipping at a bound never reached"
            for a, b in List.zip norms hugeNorms do
                Expect.floatClose Accuracy.medium a b "the same gradient norm (float64 sum here, float32 in clip_grad_norm_)"
            Expect.isTrue (norms |> List.forall (fun n -> n > 0.0 && Double.IsFinite n)) $"norms measured: %A{norms}"
        }

        test "a module with no trainable parameters is refused before the first step (its gradient would be zero)" {
            let mutable steps = 0
            let frozen = torch.nn.Linear(2L, 1L)
            for p in frozen.parameters() do p.requires_grad <- false
            for m in [ torch.nn.Sequential() :> torch.nn.Module; frozen ] do
                let task = TrainingTask.create m (fun _ -> steps <- steps + 1; StepOutput(torch.zeros(1L).sum()))
                let e = throwsWith<ArgumentException> [ "TrainingTask.Module"; "no trainable parameters"; "zero" ] (fun () -> task |> Trainer.runQuiet (TrainOptions(Steps = 2)) |> ignore)
                Expect.isFalse (e.Message.Contains "\n") "one line"
            Expect.equal steps 0 "no step taken"
        }

        test "a rate that overflows the parameters' float32 is refused before the first step, naming the option" {
            let mutable steps = 0
            let _, task, _ = taskOf torch.ScalarType.Float32 (fun _ m -> steps <- steps + 1; mse (torch.ones([| 4L; 2L |])) m)
            let e = throwsWith<ArgumentOutOfRangeException> [ "TrainOptions.LearningRate"; "Float32" ] (fun () -> Trainer.Run(task, TrainOptions(Steps = 3, LearningRate = 1e39)) |> ignore)
            Expect.equal e.ParamName "LearningRate" "ParamName"
            Expect.equal steps 0 "no step taken"
            throwsWith<ArgumentOutOfRangeException> [ "TrainOptions.ClipNorm" ] (fun () -> Trainer.Run(task, TrainOptions(Steps = 3, ClipNorm = 1e39)) |> ignore) |> ignore
            let _, task64, _ = taskOf torch.ScalarType.Float64 (fun _ m -> mse (torch.ones([| 4L; 2L |], dtype = torch.ScalarType.Float64)) m)
            Expect.equal (Trainer.Run(task64, TrainOptions(Steps = 1, LearningRate = 1e39)).Step) 1L "a float64 model takes it"
        }

        test "a diverged run (lr 1e30) stops at the step whose loss explodes; the last checkpoint is kept as written" {
            use d = new TempDir()
            let path = d.File "run.ckpt"
            let mutable saved = [||]
            // Step index 1 starts after step 1's checkpoint was written: remember its bytes then.
            let _, task, _ = taskOf torch.ScalarType.Float64 (fun k m ->
                if k = 1L then saved <- File.ReadAllBytes path
                mse (torch.ones([| 4L; 2L |], dtype = torch.ScalarType.Float64)) m)
            let options = TrainOptions(Steps = 5, LearningRate = 1e30, ClipNorm = 0.0, CheckpointPath = path, CheckpointEvery = 1)
            let e = throwsWith<InvalidOperationException> [ "step 2"; "MaxLoss"; "diverged"; "update was not applied"; "(step 1) is kept"; "--skip-nonfinite" ]
                        (fun () -> Trainer.Run(task, options) |> ignore)
            Expect.isFalse (e.Message.Contains "\n") "one line"
            Expect.equal (Trainer.Inspect path).Step 1L "the checkpoint of step 1"
            Expect.equal (File.ReadAllBytes path) saved "byte for byte"
        }

        test "a NaN gradient with a finite loss stops, naming the step and the gradient" {
            let lin, task, _ = taskOf torch.ScalarType.Float64 (fun k m ->
                let lin = m :?> TorchSharp.Modules.Linear
                if k = 1L then (lin.weight * 0.0).sqrt().sum() else lin.weight.square().sum())
            let before = ref (flat lin)
            let keep (r: LogRecord) = if r.Step = 1L then before.Value <- flat lin
            throwsWith<InvalidOperationException> [ "step 2"; "gradient norm is NaN" ] (fun () -> task |> Trainer.run (TrainOptions(Steps = 3)) keep |> ignore) |> ignore
            Expect.isTrue (sameTensor before.Value (flat lin)) "step 2 changed no parameter"
        }

        test "SkipNonFiniteSteps drops those updates and logs them; too many in a row still stops" {
            let nanAt (steps: int64 list) =
                let lin, task, x = taskOf torch.ScalarType.Float64 (fun k m ->
                    let l = mse (torch.ones([| 4L; 2L |], dtype = torch.ScalarType.Float64)) m
                    if List.contains k steps then l * nan else l)
                ignore x
                lin, task
            let lin, task = nanAt [ 2L ]
            let result, records = logged task (TrainOptions(Steps = 5, LearningRate = 0.1, SkipNonFiniteSteps = 1))
            Expect.equal result.SkippedSteps 1 "one skipped"
            Expect.equal (records |> List.filter (fun r -> r.Phase = Phase.Skipped) |> List.map _.Step) [ 3L ] "step 3 (index 2) logged as skipped"
            Expect.stringStarts (LogSinks.Format(records |> List.find (fun r -> r.Phase = Phase.Skipped))) "skip" "console line"
            Expect.isTrue (Double.IsFinite((flat lin).sum().ToDouble())) "parameters finite"
            let _, twice = nanAt [ 1L; 2L ]
            throwsWith<InvalidOperationException> [ "step 3"; "2 such steps in a row"; "more than the 1" ]
                (fun () -> Trainer.Run(twice, TrainOptions(Steps = 5, SkipNonFiniteSteps = 1)) |> ignore) |> ignore
        }

        test "a faulted adjoint solve stops the run at its step (the gradient would be zero); skipping drops that update" {
            let make () =
                torch.manual_seed 1L |> ignore
                let lin = torch.nn.Linear(3L, 3L, dtype = torch.ScalarType.Float64)
                let x = torch.ones([| 2L; 3L |], dtype = torch.ScalarType.Float64)
                let failing = Deq.Solvers.Solver(fun _ _ -> raise (InvalidOperationException "adjoint boom"))
                let settings k = { Equilibrium.defaults with Adjoint = (if k = 2L then Deq.Implicit.Adjoint.Implicit failing else Deq.Implicit.Adjoint.Implicit()) }
                let step (ctx: StepContext) =
                    let f z = torch.tanh(0.3 * lin.call z + x)
                    let eq = Equilibrium.solve (settings ctx.Step) f (torch.zeros([| 2L; 3L |], dtype = torch.ScalarType.Float64))
                    StepOutput(eq.Z.square().sum())
                lin, TrainingTask.create lin step
            let lin, task = make ()
            let before = ref (flat lin)
            let keep (r: LogRecord) = if r.Step = 2L then before.Value <- flat lin
            let e = throwsWith<InvalidOperationException> [ "step 3"; "adjoint solve failed"; "adjoint boom"; "would be zero"; "update was not applied" ]
                        (fun () -> task |> Trainer.run (TrainOptions(Steps = 4, LearningRate = 0.01)) keep |> ignore)
            printfn "  %s" e.Message
            Expect.isTrue (sameTensor before.Value (flat lin)) "step 3 changed no parameter"
            let _, skipping = make ()
            let result, records = logged skipping (TrainOptions(Steps = 4, LearningRate = 0.01, SkipNonFiniteSteps = 1))
            Expect.equal (result.Step, result.SkippedSteps) (4L, 1) "finished, one step skipped"
            Expect.equal (records |> List.filter (fun r -> r.Phase = Phase.Skipped) |> List.map _.Step) [ 3L ] "step 3 skipped"
        }

        test "live tensors stay flat over 30 steps of a tiny LM (zero_grad frees its handles within the step)" {
            use d = new TempDir()
            use corpus = tinyCorpus d
            let task = lmTask corpus
            GC.Collect()
            GC.WaitForPendingFinalizers()
            let counts = Collections.Generic.Dictionary<int64, int64>()
            let count (r: LogRecord) = if r.Phase = Phase.Train then counts.[r.Step] <- torch.Tensor.TotalCount
            task |> Trainer.run (TrainOptions(Steps = 30, LearningRate = 0.01)) count |> ignore
            printfn "  live tensors: step 5 %d, step 30 %d" counts.[5L] counts.[30L]
            Expect.isLessThanOrEqual counts.[30L] counts.[5L] $"live tensors at step 30 ({counts.[30L]}) <= at step 5 ({counts.[5L]})"
        }
    ]

/// A 1-step toy run's checkpoint, written once for the property below.
let private goodCheckpoint = lazy (
    use d = new TempDir()
    let path = d.File "toy.ckpt"
    Trainer.Run(toyTask 1L, TrainOptions(Steps = 1, CheckpointPath = path)) |> ignore
    File.ReadAllBytes path)

/// Damage done to a checkpoint file's bytes.
type Damage =
    | Truncate of keep: int
    | Flip of at: int * mask: byte
    | Pad of bytes: byte[]

[<Tests>]
let files =
    testList "trainer files" [
        test "a fresh run on an existing checkpoint is refused (file untouched); Overwrite replaces it" {
            use d = new TempDir()
            let path = d.File "toy.ckpt"
            Trainer.Run(toyTask 1L, toyOptions 5L (Some path) false) |> ignore
            let before = File.ReadAllBytes path
            let mutable stepped = false
            let task = toyTask 1L
            let watched = task |> TrainingTask.mapStep (fun step c -> stepped <- true; step c)
            throwsWith<IOException> [ path; "already exists"; "step 6 of 6"; "--resume"; "--force" ] (fun () -> Trainer.Run(watched, toyOptions 5L (Some path) false) |> ignore) |> ignore
            Expect.isFalse stepped "refused before the first step"
            Expect.equal (File.ReadAllBytes path) before "untouched"
            let replace = TrainOptions(Steps = 6, LearningRate = 0.05, WarmupSteps = 2, ClipNorm = 1.0, Seed = 7L, CheckpointPath = path, Overwrite = true)
            Expect.isTrue (Trainer.CheckCheckpoint replace).Replaces "Overwrite: replaces"
            Trainer.Run(toyTask 1L, replace) |> ignore
            Expect.equal (Trainer.Inspect path).Fingerprint.["train.seed"] "7" "replaced by the new run"
        }

        test "stale temporary files of interrupted writes are removed at start; other files stay" {
            use d = new TempDir()
            let path = d.File "toy.ckpt"
            let stale = [ d.Write("toy.ckpt.deq-tmp-0123", "half a checkpoint"); d.Write("toy.ckpt.deq-tmp-4567", "") ]
            let other = d.Write("other.ckpt.deq-tmp-89", "someone else's")
            let start = Trainer.CheckCheckpoint(toyOptions 5L (Some path) false)
            Expect.equal start.StaleTemporariesRemoved 2 "two removed"
            Expect.isFalse (stale |> List.exists File.Exists) "gone"
            Expect.isTrue (File.Exists other) "another checkpoint's temporary stays"
        }

        test "resume without a checkpoint starts afresh and says so; an unwritable path fails before training" {
            use d = new TempDir()
            let options = toyOptions 5L (Some(d.File "new.ckpt")) true
            Expect.isTrue (Trainer.CheckCheckpoint(options).ResumeStartsAfresh options) "says it starts afresh"
            let r = Trainer.Run(toyTask 1L, options)
            Expect.equal (r.ResumedFrom, r.Step) (0L, 6L) "fresh run, written"
            let blocker = d.Write("not-a-dir", "a file")
            let mutable stepped = false
            let task = toyTask 1L
            let watched = TrainingTask.create task.Module (fun c -> stepped <- true; TrainingTask.step task c)
            throwsWith<IOException> [ "not writable"; blocker ] (fun () -> Trainer.Run(watched, toyOptions 5L (Some(Path.Combine(blocker, "run.ckpt"))) false) |> ignore) |> ignore
            Expect.isFalse stepped "no step taken"
            throwsWith<IOException> [ "is a directory" ] (fun () -> Trainer.Run(toyTask 1L, toyOptions 5L (Some d.Path) false) |> ignore) |> ignore
        }

        test "extending a finished run: more steps continue it, the remaining rates follow the longer cosine" {
            use d = new TempDir()
            let path = d.File "toy.ckpt"
            Trainer.Run(toyTask 1L, toyOptions 5L (Some path) false) |> ignore
            let longer = TrainOptions(Steps = 9, LearningRate = 0.05, WarmupSteps = 2, ClipNorm = 1.0, Seed = 5L, CheckpointPath = path, Resume = true)
            let start = Trainer.CheckCheckpoint longer
            Expect.equal (start.Resumes, start.Step, start.SavedTotalSteps) (true, 6L, 6L) "resumes the 6-step run"
            let result, records = logged (toyTask 1L) longer
            Expect.equal (result.ResumedFrom, result.Step) (6L, 9L) "continued to 9"
            let rates = records |> List.filter (fun r -> r.Phase = Phase.Train) |> List.map (fun r -> r.Step, r.LearningRate.Value)
            Expect.equal rates [ for s in 7L .. 9L -> s, LearningRate.WarmupCosine(s - 1L, 0.05, 2L, 9L, 0.0) ] "the 9-step schedule's rates"
            Expect.isGreaterThan (snd rates.Head) (LearningRate.WarmupCosine(6L, 0.05, 2L, 6L, 0.0)) "above where the 6-step cosine ended"
            Expect.equal ((Trainer.Inspect path).TotalSteps) 9L "the checkpoint records the new total"
            let shorter = TrainOptions(Steps = 4, LearningRate = 0.05, WarmupSteps = 2, ClipNorm = 1.0, Seed = 5L, CheckpointPath = path, Resume = true)
            throwsWith<ArgumentOutOfRangeException> [ "at step 9"; "past the 4 steps" ] (fun () -> Trainer.Run(toyTask 1L, shorter) |> ignore) |> ignore
        }

        testPropertyWithConfig (fsConfig 200) "any truncation, byte flip or padding of a checkpoint is an InvalidDataException naming the file" <|
            fun (seed: NonNegativeInt) (kind: NonNegativeInt) (extra: byte[]) ->
                use d = new TempDir()
                let path = d.File "toy.ckpt"
                let good = goodCheckpoint.Force()
                let rng = Random(seed.Get)
                let damage =
                    match kind.Get % 3 with
                    | 0 -> Truncate(rng.Next good.Length)
                    | 1 -> Flip(rng.Next good.Length, byte (rng.Next(1, 256)))
                    | _ -> Pad(if extra.Length = 0 then [| 0uy |] else extra)
                let bad =
                    match damage with
                    | Truncate keep -> good.[.. keep - 1]
                    | Flip(at, mask) -> let b = Array.copy good in b.[at] <- b.[at] ^^^ mask; b
                    | Pad bytes -> Array.append good bytes
                File.WriteAllBytes(path, bad)
                let e = throwsWith<InvalidDataException> [ path ] (fun () -> Trainer.Inspect path |> ignore)
                Expect.isFalse (e.Message.Contains "\n") $"{damage}: one line"
    ]

[<Tests>]
let schedule =
    testList "trainer step context" [
        test "a resumed DEQ run past its pretraining does not pretrain again: the adapter reads the step" {
            use d = new TempDir()
            use corpus = tinyCorpus d
            let path = d.File "deq.ckpt"
            let config = Deq.Models.DeqTrellisNetConfig(NInp = 8, NHid = 8, NOut = 8, Schedule = Deq.Models.EquilibriumSchedule(PretrainSteps = 3, UnrolledLayers = 2))
            let task () =
                let lm = Deq.Models.DeqLanguageModels.TrellisNet("trellis-test", LanguageModelSpec(corpus.Vocabulary.Count, torch.CPU, torch.ScalarType.Float64, 1L), config)
                LanguageModelTask.Create(lm, corpus, LanguageModelTaskOptions(Deq.Data.SegmentOptions(Batch = 3, Length = 5), EvalBatch = 2, EvalSegments = 1))
            let implicitAt (records: LogRecord list) =
                records |> List.filter (fun r -> r.Phase = Phase.Train) |> List.map (fun r -> r.Step, (LogRecord.solver r |> Option.exists _.BackwardSteps.HasValue))
            let options steps = TrainOptions(Steps = steps, LearningRate = 1e-3, CheckpointPath = path, Resume = true)
            let _, first = logged (task ()) (options 3)
            Expect.equal (implicitAt first) [ 1L, false; 2L, false; 3L, false ] "steps 1-3 pretrain (unrolled, no adjoint solve)"
            let _, resumed = logged (task ()) (options 5)
            Expect.equal (implicitAt resumed) [ 4L, true; 5L, true ] "steps 4-5, in a new model object: the equilibrium with its adjoint"
            // Interrupted after step 2 (inside the pretraining) and resumed: bit-for-bit the straight run.
            let a, b = straightVsResumed task (fun p r -> TrainOptions(Steps = 5, LearningRate = 1e-3, CheckpointPath = Option.toObj p, Resume = r)) 2
            Expect.isTrue (sameTensor a b) $"resumed DEQ run: max difference {(a - b).abs().max().ToDouble()}"
        }
    ]
