module Deq.Tests.Training.TrainerTests

open System
open System.IO
open System.Threading
open Expecto
open TorchSharp
open Deq.Data
open Deq.Training
open Deq.FSharp
open Deq.Tests.Support.Files

/// A float64 regression whose steps use both RNGs: batch indices from the data generator, dropout from torch's.
let toyTask (seed: int64) =
    torch.manual_seed seed |> ignore
    let lin = torch.nn.Linear(4L, 2L, dtype = torch.ScalarType.Float64)
    use g = new torch.Generator(99UL)
    let xs = torch.randn([| 32L; 4L |], dtype = torch.ScalarType.Float64, generator = g)
    let ys = torch.randn([| 32L; 2L |], dtype = torch.ScalarType.Float64, generator = g)
    let step (ctx: StepContext) =
        let idx = torch.randint(0L, 32L, [| 8L |], generator = ctx.Data)
        let h = torch.nn.functional.dropout(lin.call(xs.index_select(0L, idx)), 0.3, true)
        StepOutput(torch.nn.functional.mse_loss(h, ys.index_select(0L, idx)), 8L)
    let eval () =
        let l = torch.nn.functional.mse_loss(lin.call xs, ys, reduction = torch.nn.Reduction.Sum)
        EvalOutput(l.ToDouble(), 64L)
    TrainingTask.create lin step |> TrainingTask.withEvaluate eval |> TrainingTask.withFingerprint [ "task", "toy" ]

let flat (m: torch.nn.Module) =
    torch.cat(m.parameters() |> Seq.map (fun p -> p.detach().flatten()) |> Array.ofSeq, 0L)

/// The toy run's options; checkpoint and resume vary per test.
let toyOptions (seed: int64) (checkpoint: string option) (resume: bool) =
    TrainOptions(Steps = 6, LearningRate = 0.05, WarmupSteps = 2, ClipNorm = 1.0, Seed = seed,
                 CheckpointPath = Option.toObj checkpoint, Resume = resume)

/// A tiny learnable corpus in a temp folder: prefixes of one sentence, 3 to 7 words long.
let tinyCorpus (d: TempDir) =
    let sentence = [| "the"; "cat"; "sat"; "on"; "a"; "mat"; "." |]
    let line i = String.Join(" ", sentence.[.. 2 + (i * 3) % 5])
    for f, n in [ "ptb.train.txt", 30; "ptb.valid.txt", 12; "ptb.test.txt", 5 ] do
        d.Write(f, String.Join("\n", Array.init n line) + "\n") |> ignore
    Corpus.Load(d.Path)

let lmTask (corpus: Corpus) =
    let model = TinyLstm.Create(LanguageModelSpec(corpus.Vocabulary.Count, torch.CPU, torch.ScalarType.Float64, 1L), hidden = 6)
    LanguageModelTask.Create(model, corpus, LanguageModelTaskOptions(SegmentOptions(Batch = 3, Length = 5), EvalBatch = 2))

/// Runs to completion straight, and again interrupted after `cut` steps then resumed; returns both parameter vectors.
let straightVsResumed (make: unit -> TrainingTask) (options: string option -> bool -> TrainOptions) cut =
    use d = new TempDir()
    let a = make ()
    Trainer.Run(a, options None false) |> ignore
    let path = d.File "run.ckpt"
    let o = options (Some path) true
    use cancel = new CancellationTokenSource()
    let stopAt (r: LogRecord) = if r.Phase = Phase.Train && r.Step = int64 cut then cancel.Cancel()
    let first = make () |> Trainer.runCancellable o stopAt cancel.Token
    Expect.isTrue first.Interrupted "interrupted"
    Expect.equal first.Step (int64 cut) "stopped after the cut"
    Expect.equal (Trainer.Inspect path).Step (int64 cut) "checkpoint at the cut"
    let b = make ()
    let second = Trainer.Run(b, o)
    Expect.equal second.ResumedFrom (int64 cut) "resumed from the cut"
    Expect.equal second.Step (int64 o.Steps) "finished"
    flat a.Module, flat b.Module

[<Tests>]
let tests =
    testList "trainer" [
        test "warmup is linear to the peak, cosine decays to the minimum at the last step" {
            let lr s = LearningRate.WarmupCosine(s, 1.0, 4L, 14L, 0.1)
            Expect.floatClose Accuracy.veryHigh (lr 0L) 0.25 "first warmup step"
            Expect.floatClose Accuracy.veryHigh (lr 3L) 1.0 "end of warmup"
            Expect.floatClose Accuracy.veryHigh (lr 4L) 1.0 "decay starts at the peak"
            Expect.floatClose Accuracy.veryHigh (lr 9L) 0.55 "half way: (peak + min) / 2"
            Expect.floatClose Accuracy.veryHigh (lr 14L) 0.1 "minimum at total"
            Expect.isTrue (Seq.pairwise [ 4L .. 14L ] |> Seq.forall (fun (a, b) -> lr b <= lr a)) "non-increasing after warmup"
        }

        test "an option out of range is an error naming it" {
            for o, name in [ TrainOptions(Steps = 0), "Steps"; TrainOptions(LearningRate = -1.0), "LearningRate"
                             TrainOptions(Steps = 5, WarmupSteps = 6), "WarmupSteps"; TrainOptions(ClipNorm = nan), "ClipNorm"
                             TrainOptions(Beta2 = 1.0), "Beta2" ] do
                let e = throwsWith<ArgumentOutOfRangeException> [ "TrainOptions." + name ] (fun () -> Trainer.Run(toyTask 0L, o) |> ignore)
                Expect.equal e.ParamName name "ParamName"
            throwsWith<ArgumentException> [ "Resume"; "CheckpointPath" ] (fun () -> TrainOptions(Resume = true).Validate() |> ignore) |> ignore
        }

        test "one seed, one run: identical parameters; another seed differs" {
            let run seed = let t = toyTask 1L in Trainer.Run(t, toyOptions seed None false) |> ignore; flat t.Module
            let a, b, c = run 5L, run 5L, run 6L
            Expect.isTrue (sameTensor a b) "same seed, same parameters"
            Expect.isFalse (sameTensor a c) "another seed (dropout and batch order) differs"
        }

        test "interrupted after 3 of 6 steps and resumed: bit-for-bit the straight run (float64, dropout, data RNG, Adam)" {
            let a, b = straightVsResumed (fun () -> toyTask 1L) (toyOptions 5L) 3
            Expect.isTrue (sameTensor a b) $"max difference {(a - b).abs().max().ToDouble()}"
        }

        test "the same for lstm-tiny on a tiny corpus, memory carried across segments and an epoch boundary" {
            use d = new TempDir()
            use corpus = tinyCorpus d
            let segments = Batching.SegmentCount(Batching.Batchify(corpus.Train, 3), 5)
            let o path resume =
                TrainOptions(Steps = segments + 3, LearningRate = 0.01, Seed = 2L, EvalEvery = 4,
                             CheckpointPath = Option.toObj path, Resume = resume)
            let a, b = straightVsResumed (fun () -> lmTask corpus) o (segments - 2)
            Expect.isTrue (sameTensor a b) $"max difference {(a - b).abs().max().ToDouble()}"
        }

        test "validation perplexity is exp(mean NLL): uniform logits give the vocabulary size" {
            use d = new TempDir()
            use corpus = tinyCorpus d
            let w = torch.nn.Linear(1L, 1L)
            let v = int64 corpus.Vocabulary.Count
            let forward (input: torch.Tensor) _ _ =
                LanguageModel.output (torch.zeros([| input.shape.[0]; input.shape.[1]; v |]) + 0.0 * w.weight.sum()) None
            let task = LanguageModelTask.Create(LanguageModel.create w forward [], corpus, LanguageModelTaskOptions(SegmentOptions(2, 4)))
            let r = Trainer.Evaluate task
            Expect.floatClose Accuracy.medium r.Perplexity (float v) "ppl of uniform predictions"
            Expect.equal r.Tokens ((corpus.Valid.shape.[0] / 10L - 1L) * 10L) "every next-token prediction of the batchified split"
        }

        test "training improves the tiny LM's validation perplexity" {
            use d = new TempDir()
            use corpus = tinyCorpus d
            let task = lmTask corpus
            let before = Trainer.Evaluate(task).Perplexity
            let after = task |> Trainer.runQuiet (TrainOptions(Steps = 30, LearningRate = 0.05, Seed = 1L)) |> TrainResult.valid |> Option.get |> _.Perplexity
            Expect.isLessThan after before "perplexity falls"
        }

        test "a NaN loss stops with the step named, before the parameters change" {
            let lin = torch.nn.Linear(2L, 1L, dtype = torch.ScalarType.Float64)
            let before = flat lin
            let step (_: StepContext) = StepOutput(lin.weight.sum() * nan)
            throwsWith<InvalidOperationException> [ "step 1"; "NaN" ] (fun () -> TrainingTask.create lin step |> Trainer.runQuiet (TrainOptions(Steps = 3)) |> ignore) |> ignore
            Expect.isTrue (sameTensor before (flat lin)) "parameters untouched"
        }
    ]
