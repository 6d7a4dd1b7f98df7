// How often Anderson hits its iteration cap in training (issue #14's stall check): the 716K-parameter DEQ-Transformer
// (deq-transformer-cpu-small) on PTB, batch 8, segments of 32 with memory 32, Adam at 1e-3, Anderson m = 6 forward and
// on the adjoint, 30 iterations to relative 1e-3; counts the training steps 201-400 whose forward solve took all 30.
// From the repository root, after `dotnet build -c Release Deq.Core`:
//   dotnet fsi examples/anderson-cap-hits.fsx PTB_DIR element|batch SEED
#r "../Deq.Core/bin/Release/net10.0/linux-x64/TorchSharp.dll"
#r "../Deq.Core/bin/Release/net10.0/linux-x64/Deq.Core.dll"
open System
open TorchSharp
open Deq.Solvers
open Deq.Implicit
open Deq.Data
open Deq.Training
open Deq.Models

let args = fsi.CommandLineArgs |> Array.skip 1
let corpusDir, seed = args.[0], int64 args.[2]
let scope = if args.[1] = "batch" then StopScope.Batch else StopScope.EveryElement
torch.set_num_threads 1
let corpus = Corpus.Load corpusDir
let anderson () = Anderson.Create(SolverOptions(MaxIter = 30, Tol = 1e-3, Over = scope), AndersonOptions(Memory = 6))
let spec = LanguageModelSpec(corpus.Vocabulary.Count, torch.CPU, torch.ScalarType.Float32, seed, anderson (), Adjoint.Implicit(anderson ()))
let lm = DeqLanguageModels.Registry.Create("deq-transformer-cpu-small", spec)
let task = LanguageModelTask.Create(lm, corpus, LanguageModelTaskOptions(SegmentOptions(Batch = 8, Length = 32), EvalSegments = 20))
let forwardSteps = Collections.Generic.Dictionary<int64, int>()
let record (r: LogRecord) =
    match r.Phase, Option.ofObj r.Solver with
    | Phase.Train, Some s when s.ForwardSteps.HasValue -> forwardSteps.[r.Step] <- s.ForwardSteps.Value
    | _ -> ()
let clock = Diagnostics.Stopwatch.StartNew()
let result = Trainer.Run(task, TrainOptions(Steps = 400, LearningRate = 1e-3, Seed = seed), Action<LogRecord> record)
let window = [ for KeyValue(step, n) in forwardSteps do if step > 200L then n ]
let capped = window |> List.filter (fun n -> n >= 30) |> List.length
printfn "stop over %A, seed %d: cap hit in %d of %d steps (201-400), mean %.1f forward steps; valid ppl %.1f; %.0f s"
    scope seed capped window.Length (window |> List.averageBy float) result.Valid.Perplexity clock.Elapsed.TotalSeconds
