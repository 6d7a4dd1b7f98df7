module Deq.Tests.Experiments.BaselineTests

open System
open Expecto
open TorchSharp
open Deq.Models
open Deq.Data
open Deq.Experiments
open Deq.Experiments.Baselines

let private count (m: torch.nn.Module) = m.parameters() |> Seq.sumBy (fun p -> p.numel())

let private config memLen dModel dInner =
    DeqTransformerConfig(NToken = 50, DModel = dModel, NHead = 2, DHead = dModel / 2, DInner = dInner, SeqLen = 6, MemLen = memLen, InitStd = 0.1)
let private tinyConfig = config 4 16 32

[<Tests>]
let tests =
    testList "Experiments.Baselines" [
        test "TCN: logits [B, 10, 10], parameter count as computed, receptive field covers the sequence" {
            torch.manual_seed 1L |> ignore
            let levels = TcnCopyModel.LevelsFor(40, 8)
            Expect.isGreaterThanOrEqual (TcnCopyModel.ReceptiveField(levels, 8)) 40L "covers T + 20 = 40"
            Expect.isLessThan (TcnCopyModel.ReceptiveField(levels - 1, 8)) 40L "and is the fewest levels"
            let c = TcnCopyModel.ChannelsFor(13226L, levels, 8)
            use m = new TcnCopyModel(c, levels, 8)
            Expect.equal (count m) (TcnCopyModel.ParameterCount(c, levels, 8)) "analytic count"
            Expect.isLessThanOrEqual (count m) 13226L "within the DEQ's budget"
            Expect.isGreaterThan (TcnCopyModel.ParameterCount(c + 1, levels, 8)) 13226L "the most channels that fit"
            use x = torch.randint(0L, 10L, [| 3L; 40L |], dtype = torch.int64)
            use y = m.Forward x
            Expect.equal y.shape [| 3L; 10L; 10L |] "logits"
            Expect.throws (fun () -> m.Forward(torch.zeros(3L, dtype = torch.int64)) |> ignore) "a 1-d input is refused"
        }

        test "TCN is causal: changing input t leaves features before t unchanged, and changes t" {
            torch.manual_seed 2L |> ignore
            use m = new TcnCopyModel(6, 3, 3)
            m.eval()
            use x = torch.randint(1L, 9L, [| 2L; 20L |], dtype = torch.int64)
            use x2 = x.clone()
            x2.index_put_(torch.tensor(0L, dtype = torch.int64), [| torch.TensorIndex.Colon; torch.TensorIndex.Single 12L |]) |> ignore
            use a = m.Features x
            use b = m.Features x2
            Expect.isTrue (a.narrow(1, 0L, 12L).allclose(b.narrow(1, 0L, 12L))) "positions 0..11 do not see position 12"
            Expect.isFalse (a.narrow(1, 12L, 1L).allclose(b.narrow(1, 12L, 1L))) "position 12 does"
        }

        test "TCN trains on copy memory: the loss falls over a few Adam steps" {
            torch.manual_seed 3L |> ignore
            use data = CopyMemory.Generate(CopyMemoryOptions(4, 32, 8, 5L))
            use m = new TcnCopyModel(12, TcnCopyModel.LevelsFor(24, 4), 4)
            use opt = torch.optim.Adam(m.parameters(), lr = 1e-2)
            let losses =
                [ for _ in 1 .. 8 do
                    opt.zero_grad()
                    use loss = CopyMemoryModel.Loss(m.Forward data.TrainX, data.TrainY)
                    loss.backward()
                    opt.step() |> ignore
                    yield loss.item<float32>() |> float ]
            Expect.isLessThan (List.last losses) (List.head losses) $"loss should fall: %A{losses}"
        }

        test "untied Transformer-XL: per-layer weights, shapes, memory, and the analytic layer count" {
            torch.manual_seed 4L |> ignore
            use m = new UntiedTransformerLM(tinyConfig, 3)
            let layer = m.core.[0] :> torch.nn.Module
            Expect.equal (count layer) (UntiedTransformerLM.LayerParameters tinyConfig) "analytic layer count"
            Expect.equal m.CoreParameters (3L * count layer) "three layers"
            let w0 = m.core.[0].pos_ff.ff1_net.parameters() |> Seq.head
            let w1 = m.core.[1].pos_ff.ff1_net.parameters() |> Seq.head
            Expect.isFalse (w0.allclose w1) "layers do not share weights"
            use tokens = torch.randint(0L, 50L, [| 2L; 6L |], dtype = torch.int64)
            let out1 = m.Forward tokens
            let h, mem = out1.Hidden, Deq.Tests.Models.ModelFixtures.required "memory" out1.Memory
            Expect.equal h.shape [| 2L; 6L; 16L |] "features"
            Expect.equal mem.shape [| 2L; 4L; 48L |] "memory: last 4 inputs of each of 3 layers"
            let out2 = m.Forward(tokens, mem)
            let h2, mem2 = out2.Hidden, Deq.Tests.Models.ModelFixtures.required "memory" out2.Memory
            Expect.equal h2.shape [| 2L; 6L; 16L |] "with memory"
            Expect.equal mem2.shape [| 2L; 4L; 48L |] "memory stays MemLen long"
            Expect.throws (fun () -> m.Forward(tokens, torch.zeros(2L, 4L, 16L)) |> ignore) "memory of the wrong width is refused"
        }

        test "untied Transformer-XL is causal within a segment" {
            torch.manual_seed 5L |> ignore
            use m = new UntiedTransformerLM(config 0 16 32, 2)
            m.eval()
            use x = torch.randint(0L, 50L, [| 1L; 6L |], dtype = torch.int64)
            use x2 = x.clone()
            x2.index_put_(torch.tensor(((x.[0, 4].item<int64>() + 1L) % 50L), dtype = torch.int64), [| torch.TensorIndex.Single 0L; torch.TensorIndex.Single 4L |]) |> ignore
            let a = m.Forward(x).Hidden
            let b = m.Forward(x2).Hidden
            Expect.isTrue (a.narrow(1, 0L, 4L).allclose(b.narrow(1, 0L, 4L), rtol = 1e-5, atol = 1e-6)) "positions 0..3 do not see position 4"
            Expect.isFalse (a.narrow(1, 4L, 1L).allclose(b.narrow(1, 4L, 1L))) "position 4 does"
        }

        test "untied Transformer-XL matches a DEQ's parameter count and trains with the shared trainer" {
            let deq = config 4 32 64
            let target = UntiedTransformerLM.DeqCoreParameters deq
            use deqModel = new DeqTransformerLM(deq)
            let struct (_, core) = LmTraining.Count deqModel
            Expect.equal core target "the DEQ core count is the analytic one"
            let matched = UntiedTransformerLM.MatchParameters(deq, 4, target)
            let total = 4L * UntiedTransformerLM.LayerParameters matched
            Expect.isLessThan (abs (float (total - target)) / float target) 0.1 $"4 layers hold {total} against the DEQ's {target}"
            use data = new LmData(LmData.SyntheticCorpus(60, 2000, 2), true, "synthetic (test)")
            let run = LmTraining.TrainAndDispose("untied", "test", (fun spec -> UntiedTransformerLM.Create("untied", spec, matched, 4)), data.Corpus,
                                                 LmBudget(Steps = 6, Batch = 4, SeqLen = 6, LearningRate = 1e-2, WarmupSteps = 1, EvalBatch = 2, EvalSegments = 2))
            Expect.isTrue (Double.IsFinite run.TestPerplexity && run.TestPerplexity >= 1.0) "finite perplexity"
            Expect.equal run.NonEmbedding total "the layers are the non-embedding model"
            Expect.isLessThan run.FinalTrainLoss (log 60.0 + 0.5) "training moved the loss to about uniform or below"
        }
    ]
