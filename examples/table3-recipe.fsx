// Table 3's large recipes on WikiText-2, chosen on the VALIDATION split (the test split is never looked at): trains
// one model of Table 3's large preset (sizes from Table3Settings.For(Large)) with the given rate and initialisation
// and prints its validation perplexity. Kinds: tied-transformer (the 8-layer weight-tied Transformer-XL),
// deq-transformer (the small DEQ-Transformer), tied-trellisnet (12 layers), deq-trellisnet.
// INITSTD, EMBSTD and PROJSTD override the preset's initialisation; EVALSEG (default 150) the validation segments.
// From the repository root, after `dotnet build -c Release Deq.Experiments`, with DEQ_DATA_DIR set:
//   dotnet fsi examples/table3-recipe.fsx KIND STEPS LR PRETRAIN THREADS
#r "../Deq.Experiments/bin/Release/net10.0/linux-x64/TorchSharp.dll"
#r "../Deq.Experiments/bin/Release/net10.0/linux-x64/Deq.Core.dll"
#r "../Deq.Experiments/bin/Release/net10.0/linux-x64/Deq.Experiments.dll"
open Deq.Experiments
open Deq.Models
let a = fsi.CommandLineArgs |> Array.skip 1
let kind, steps, lr, pretrain = a.[0], int a.[1], float a.[2], int a.[3]
TorchSharp.torch.set_num_threads (int a.[4])
let env (n: string) (d: float) = match System.Environment.GetEnvironmentVariable n with null | "" -> d | v -> float v
let s = Table3Settings.For ExperimentScale.Large
let cutoffs = s.Cutoffs
// The preset's lean schedules: 12 forward / adjoint iterations for the Transformer, 10 for the TrellisNet.
let lean (e: EquilibriumSchedule) iters = EquilibriumSchedule.Lean(pretrainSteps = pretrain, unrolledLayers = e.UnrolledLayers, forwardIterations = iters, backwardIterations = iters)
let transformer (schedule: EquilibriumSchedule) =
    let c = s.Small
    DeqTransformerConfig(DModel = c.DModel, NHead = c.NHead, DHead = c.DHead, DInner = c.DInner, SeqLen = c.SeqLen, MemLen = c.MemLen, Dropout = c.Dropout,
                         DivVal = c.DivVal, Cutoffs = cutoffs, InitStd = env "INITSTD" c.InitStd, EmbedInitStd = env "EMBSTD" c.EmbedInitStd,
                         ProjInitStd = env "PROJSTD" c.ProjInitStd, Schedule = schedule)
let trellis (schedule: EquilibriumSchedule) =
    let c = s.Trellis
    DeqTrellisNetConfig(NInp = c.NInp, NHid = c.NHid, NOut = c.NOut, SeqLen = c.SeqLen, Dropout = c.Dropout, DropoutI = c.DropoutI, DropoutH = c.DropoutH,
                        DivVal = c.DivVal, Cutoffs = cutoffs, InitStd = env "INITSTD" c.InitStd, EmbedInitStd = env "EMBSTD" c.EmbedInitStd, Schedule = schedule)
let factory : Deq.Training.LanguageModelSpec -> Deq.Training.LanguageModel =
    match kind with
    | "tied-transformer" -> fun sp -> DeqLanguageModels.Transformer(kind, sp, transformer (EquilibriumSchedule.WeightTied s.TransformerBaselineLayers))
    | "deq-transformer" -> fun sp -> DeqLanguageModels.Transformer(kind, sp, transformer (lean s.TransformerSchedule 12))
    | "tied-trellisnet" -> fun sp -> DeqLanguageModels.TrellisNet(kind, sp, trellis (EquilibriumSchedule.WeightTied s.TrellisBaselineLayers))
    | "deq-trellisnet" -> fun sp -> DeqLanguageModels.TrellisNet(kind, sp, trellis (lean s.TrellisSchedule 10))
    | k -> failwithf "unknown kind %s (tied-transformer, deq-transformer, tied-trellisnet, deq-trellisnet)" k
let data = LmData.Load "wikitext-2"
let c = data.Corpus
// The trainer evaluates on the test slot, so it gets the validation split (its progress line still says "test ppl").
let onValid = new Deq.Data.Corpus(c.Name, c.Vocabulary, c.Train, c.Valid, c.Valid)
let b = s.Budget
let budget = LmBudget(Steps = steps, Batch = b.Batch, SeqLen = b.SeqLen, LearningRate = lr, WarmupSteps = min b.WarmupSteps steps, EvalBatch = b.EvalBatch, EvalSegments = int (env "EVALSEG" 150.0))
let run = LmTraining.TrainAndDispose(kind, "", factory, onValid, budget)
printfn "RESULT [%s] %s steps %d lr %g pretrain %d init %g/%g/%g: VALID ppl %.1f, last loss %.3f, %.0f s" (System.Environment.GetEnvironmentVariable "TAG") kind steps lr pretrain (env "INITSTD" nan) (env "EMBSTD" nan) (env "PROJSTD" nan) run.TestPerplexity run.FinalTrainLoss run.Seconds
