module Deq.Tests.Models.TrainingTests

open System
open System.Diagnostics
open Expecto
open TorchSharp

open Deq.Implicit
open Deq.Models
open Deq.FSharp
open Deq.Tests.Support.Generators
open Deq.Tests.Models.ModelFixtures

/// Runs `steps` Adam steps of `stepLoss` (step index -> loss); returns the losses and the mean step time.
let private train (parameters: seq<TorchSharp.Modules.Parameter>) (lr: float) (steps: int) (stepLoss: int -> Tensor) =
    use opt = torch.optim.Adam(parameters, lr = lr)
    let watch = Stopwatch.StartNew()
    let losses =
        [ for step in 0 .. steps - 1 do
            use scope = torch.NewDisposeScope()
            opt.zero_grad()
            let loss = stepLoss step
            loss.backward()
            opt.step() |> ignore
            loss.ToDouble() ]
    losses, watch.Elapsed.TotalMilliseconds / float steps

/// Batches [B, T] of inputs and next-token targets from a token stream.
let private lmBatch (ids: int64[]) (b: int) (t: int) (offset: int) =
    let take start = Array.init (b * t) (fun i -> ids[offset + start + (i / t) * (t + 1) + i % t])
    torch.tensor(take 0, dtype = ScalarType.Int64).reshape(int64 b, int64 t),
    torch.tensor(take 1, dtype = ScalarType.Int64).reshape(int64 b, int64 t)

let private synthetic n = Array.init 400 (fun i -> int64 ((i * 7 + i / 3) % n))

let private corpus () =
    match ptbTrain with
    | Some path -> let ids, v = ptbTokens path 3000 in Some(ids, v)
    | None -> None

/// Three Adam steps from `lossAt step` (step 0 unrolled, as pretraining, then implicit); the loss on the batch must drop.
let private lossDrops (label: string) (m: torch.nn.Module) (lossAt: int -> Tensor) =
    m.train()
    let eval () =
        use _ = torch.no_grad()
        (lossAt 1).ToDouble()
    let before = eval ()
    let losses, ms = train (m.parameters()) 1e-2 3 lossAt
    let after = eval ()
    printfn $"{label} ({paramCount m} params): losses %A{losses}, eval {before:F4} -> {after:F4}, {ms:F0} ms/step"
    settle ()
    Expect.isLessThan after before "loss decreased"

let private lmTraining (name: string) (ids: int64[]) (vocab: int) =
    testList name [
        test "DEQ-Transformer: loss decreases over 3 Adam steps (pretrain step, then implicit)" {
            use scope = torch.NewDisposeScope()
            torch.manual_seed(41L) |> ignore
            let cfg = DeqTransformerConfig(NToken = vocab, Schedule = EquilibriumSchedule.Lean(pretrainSteps = 1, unrolledLayers = 4, forwardIterations = 20, backwardIterations = 20))
            use m = new DeqTransformerLM(cfg)
            let x, y = lmBatch ids 4 cfg.SeqLen 0
            lossDrops "DEQ-Transformer tiny" m (fun step -> m.Loss((DeqTransformerLM.forwardAt m x None step).Hidden, y))
        }

        test "DEQ-TrellisNet: loss decreases over 3 Adam steps (pretrain step, then implicit)" {
            use scope = torch.NewDisposeScope()
            torch.manual_seed(42L) |> ignore
            let cfg = DeqTrellisNetConfig(NToken = vocab, Schedule = EquilibriumSchedule.Lean(pretrainSteps = 1, unrolledLayers = 8, forwardIterations = 30, backwardIterations = 30))
            use m = new DeqTrellisNetLM(cfg)
            let x, y = lmBatch ids 4 cfg.SeqLen 0
            lossDrops "DEQ-TrellisNet tiny" m (fun step -> m.Loss((DeqTrellisNetLM.forwardAt m x None step).Hidden, y))
        }
    ]

[<Tests>]
let training =
    testList "training a few steps" [
        lmTraining "synthetic tokens" (synthetic 50) 50
        match corpus () with
        | Some(ids, v) -> lmTraining $"first 3000 PTB tokens ({v} types)" ids v
        | None -> ptestCase "first 3000 PTB tokens (data absent)" ignore

        test "copy memory: loss decreases over 3 Adam steps, scored on the last 10 positions" {
            use scope = torch.NewDisposeScope()
            torch.manual_seed(43L) |> ignore
            use m = new CopyMemoryModel(CopyMemoryConfig.Tiny)
            m.train()
            use data = Deq.Data.CopyMemory.Generate(Deq.Data.CopyMemoryOptions(T = CopyMemoryConfig.Tiny.BlankLength, TrainSize = 8, TestSize = 1, Seed = 44L))
            let x, digits = data.TrainX, data.TrainY
            Expect.equal x.shape [| 8L; 40L |] "T + 20 symbols"
            let options = EquilibriumSchedule.Lean(forwardIterations = 20, backwardIterations = 20).OptionsAt(0)
            let eval () =
                use _ = torch.no_grad()
                CopyMemoryModel.Loss(m.Forward(x, options).Logits, digits).ToDouble()
            let before = eval ()
            let losses, ms = train (m.parameters()) 1e-2 3 (fun _ -> CopyMemoryModel.Loss(m.Forward(x, options).Logits, digits))
            let after = eval ()
            printfn $"Copy memory tiny ({paramCount m} params): losses %A{losses}, {before:F4} -> {after:F4}, {ms:F0} ms/step"
            settle ()
            Expect.isLessThan after before "loss decreased"
        }

        test "registry entries: [L, B] in, [L, B, V] log-probabilities out, memory carried, solver stats" {
            use scope = torch.NewDisposeScope()
            for name in [ "deq-transformer-tiny"; "deq-trellisnet-tiny" ] do
                let lm = Deq.Models.DeqLanguageModels.Registry.Create(name, Deq.Training.LanguageModelSpec(30, torch.CPU, Seed = 5L))
                use _ = lm.Module
                let input = (tokens 6 3 5 30).t()   // [L 5, B 3]
                let first = LanguageModel.forward lm input None None
                let logits = present "logits" (LanguageModel.logits first)
                Expect.equal logits.shape [| 5L; 3L; 30L |] $"{name}: logits"
                Expect.isLessThan (maxAbsDiff (logits.exp().sum(2L).double()) (torch.ones([| 5L; 3L |], dtype = ScalarType.Float64))) 1e-4 $"{name}: log-probabilities"
                let memory = present "memory" (LanguageModel.memory first)
                let second = LanguageModel.forward lm input (Some memory) None
                Expect.equal (present "logits" (LanguageModel.logits second)).shape [| 5L; 3L; 30L |] $"{name}: with memory"
                let stats = present "stats" (LanguageModel.stats second)
                Expect.isTrue (stats.ForwardSteps.HasValue && stats.ForwardSteps.Value > 0) $"{name}: forward solver steps reported"
            settle ()
        }

        test "with an adaptive softmax the trainer scores targets only: the loss of the full log-probabilities, in float64" {
            use scope = torch.NewDisposeScope()
            let spec = Deq.Training.LanguageModelSpec(40, torch.CPU, DType = ScalarType.Float64, Seed = 5L)
            let cutoffs = ResizeArray [ 10; 20 ] :> Collections.Generic.IReadOnlyList<int>
            let schedule = EquilibriumSchedule.Lean(forwardIterations = 30, backwardIterations = 30)
            let transformer = DeqTransformerConfig(InitStd = 0.25, Cutoffs = cutoffs, DivVal = 2, Schedule = schedule)   // Tiny's sizes
            let trellis = DeqTrellisNetConfig(Cutoffs = cutoffs, DivVal = 2, Schedule = schedule)
            let input = (tokens 6 3 6 40).t()   // [L 6, B 3]
            let target = (tokens 7 3 6 40).t()
            let reference (hidden: Tensor) (logProbs: Tensor -> Tensor) =
                torch.nn.functional.cross_entropy(logProbs(hidden).reshape(-1L, 40L), target.t().reshape(-1L), reduction = torch.nn.Reduction.Sum)
            let cases : (string * Deq.Training.LanguageModel * (unit -> Tensor)) list =
                [ let lm = DeqLanguageModels.Transformer("t", spec, transformer)
                  let m = lm.Module :?> DeqTransformerLM
                  "DEQ-Transformer", lm, (fun () -> reference (m.Forward(input.t(), null, m.Config.EffectiveSchedule.OptionsAt -1).Hidden) m.LogProbs)
                  let lm = DeqLanguageModels.TrellisNet("r", spec, trellis)
                  let m = lm.Module :?> DeqTrellisNetLM
                  "DEQ-TrellisNet", lm, (fun () -> reference (m.Forward(input.t(), null, m.Config.EffectiveSchedule.OptionsAt -1).Hidden) m.LogProbs) ]
            for name, lm, full in cases do
                use _ = lm.Module
                lm.Module.eval() |> ignore
                use _ = torch.no_grad()
                let out = LanguageModel.forward lm input None None
                Expect.isNone (LanguageModel.logits out) $"{name}: no [L, B, V] logits are formed"
                let sum = out.Loss(target, torch.nn.Reduction.Sum).ToDouble()
                let expected = full().ToDouble()
                Expect.floatClose Accuracy.veryHigh sum expected $"{name}: summed NLL equals the full log-probabilities' cross-entropy"
                Expect.floatClose Accuracy.veryHigh ((LanguageModel.loss out target).ToDouble()) (expected / 18.0) $"{name}: mean over the 18 tokens"
                Expect.equal (out.Loss(target, torch.nn.Reduction.None).shape) [| 18L |] $"{name}: per token"
            let neither = Deq.Training.LanguageModelOutput(null, null)
            Expect.throwsT<InvalidOperationException> (fun () -> neither.Loss(target) |> ignore) "neither logits nor NLL"
        }

        test "the schedule is a pure function of the step: unrolled while pretraining, implicit after" {
            let s = EquilibriumSchedule(PretrainSteps = 3, UnrolledLayers = 5)
            Expect.equal (s.AdjointAt 0) (Adjoint.Unrolled 5) "step 0"
            Expect.equal (s.AdjointAt 2) (Adjoint.Unrolled 5) "step 2"
            Expect.isTrue (s.AdjointAt 3 :? ImplicitAdjoint) "step 3"
            Expect.isTrue (s.AdjointAt -1 :? ImplicitAdjoint) "evaluation"
            Expect.equal ((EquilibriumSchedule.WeightTied 4).AdjointAt 1000000) (Adjoint.Unrolled 4) "weight-tied baseline"
            Expect.equal ((EquilibriumSchedule.WeightTied 4).AdjointAt -1) (Adjoint.Unrolled 4) "weight-tied baseline is evaluated unrolled"
        }
    ]
