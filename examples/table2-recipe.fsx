// The large recipes, chosen on a VALIDATION split (the test split is never looked at): trains the weight-tied
// TrellisNet (12 layers) or the DEQ-TrellisNet of Table 2's large preset with the given rate and sizes and prints the
// validation perplexity. Initialisation and dropout come from INITSTD, EMBSTD, DROP, DROPI, DROPH (defaults: the
// reference's); CORPUS, SEQ, BATCH, DIVVAL and EVALSEG (defaults: PTB, Table 2's 70, 20, 1 and the whole split) set
// the data, e.g. CORPUS=wikitext-2 SEQ=64 BATCH=16 DIVVAL=2 EVALSEG=150 with cutoffs 2000,10000 for Table 3's setting.
// From the repository root, after `dotnet build -c Release Deq.Experiments`, with DEQ_DATA_DIR set:
//   dotnet fsi examples/table2-recipe.fsx tied|deq STEPS LR D_EMBED NHID none|CUTOFFS PRETRAIN THREADS
#r "../Deq.Experiments/bin/Release/net10.0/linux-x64/TorchSharp.dll"
#r "../Deq.Experiments/bin/Release/net10.0/linux-x64/Deq.Core.dll"
#r "../Deq.Experiments/bin/Release/net10.0/linux-x64/Deq.Experiments.dll"
open Deq.Experiments
open Deq.Models
let a = fsi.CommandLineArgs |> Array.skip 1
let kind, steps, lr, ninp, nhid = a.[0], int a.[1], float a.[2], int a.[3], int a.[4]
let cutoffs = if a.[5] = "none" then null else a.[5].Split(',') |> Array.map int :> System.Collections.Generic.IReadOnlyList<int>
let pretrain = int a.[6]
TorchSharp.torch.set_num_threads (int a.[7])
let env (n: string) (d: float) = match System.Environment.GetEnvironmentVariable n with null | "" -> d | v -> float v
let schedule =
    if kind = "tied" then EquilibriumSchedule.WeightTied 12
    else EquilibriumSchedule.Lean(pretrainSteps = pretrain, unrolledLayers = 4, forwardIterations = 10, backwardIterations = 10)
let cfg = DeqTrellisNetConfig(NInp = ninp, NHid = nhid, NOut = ninp, SeqLen = int (env "SEQ" 70.0), DivVal = int (env "DIVVAL" 1.0), Dropout = env "DROP" 0.1, DropoutI = env "DROPI" 0.1, DropoutH = env "DROPH" 0.05,
                              InitStd = env "INITSTD" 0.05, EmbedInitStd = env "EMBSTD" 0.1, Cutoffs = cutoffs, Schedule = schedule)
let data = LmData.Load (match System.Environment.GetEnvironmentVariable "CORPUS" with null | "" -> "ptb" | c -> c)
let c = data.Corpus
// The trainer evaluates on the test slot, so it gets the validation split (its progress line still says "test ppl").
let onValid = new Deq.Data.Corpus(c.Name, c.Vocabulary, c.Train, c.Valid, c.Valid)
let budget = LmBudget(Steps = steps, Batch = int (env "BATCH" 20.0), SeqLen = int (env "SEQ" 70.0), LearningRate = lr, WarmupSteps = min 50 steps, EvalBatch = 10, EvalSegments = int (env "EVALSEG" 0.0))
let run = LmTraining.TrainAndDispose(kind, "", (fun spec -> DeqLanguageModels.TrellisNet(kind, spec, cfg)), onValid, budget)
printfn "RESULT [%s] %s steps %d lr %g ninp %d nhid %d cutoffs %s pretrain %d: VALID ppl %.1f, last loss %.3f, %.0f s" (System.Environment.GetEnvironmentVariable "TAG") kind steps lr ninp nhid a.[5] pretrain run.TestPerplexity run.FinalTrainLoss run.Seconds
