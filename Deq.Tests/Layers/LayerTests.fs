module Deq.Tests.Layers.LayerTests

open Expecto
open TorchSharp

open Deq.Layers
open Deq.Tests.Support.Generators
open Deq.Tests.Models.ModelFixtures

[<Tests>]
let layers =
    testList "layers" [
        test "rel-shift scores key j against the distance (M+i) - j" {
            use scope = torch.NewDisposeScope()
            let t, m = 3L, 2L
            let k = t + m
            // x[i, j] = 100 i + (distance K-1-j): after the shift, column j must hold 100 i + (M + i - j).
            let values = [| for i in 0L .. t - 1L do for j in 0L .. k - 1L -> float (100L * i + (k - 1L - j)) |]
            let x = torch.tensor(values, dtype = ScalarType.Float64).reshape(1L, 1L, t, k)
            let y = RelativeMultiHeadAttention.RelShift(x).data<float>().ToArray()
            for i in 0L .. t - 1L do
                for j in 0L .. m + i do
                    Expect.equal y[int (i * k + j)] (float (100L * i + (m + i - j))) $"entry ({i}, {j})"
        }

        test "weight norm: w = g v / ||v|| per output row, and equals v at initialisation" {
            use scope = torch.NewDisposeScope()
            torch.manual_seed(3L) |> ignore
            use lin = new WeightNormLinear(5L, 4L, weightNorm = true)
            lin.``to``(ScalarType.Float64) |> ignore
            Expect.isLessThan (maxAbsDiff (lin.Weight()) lin.weight) 1e-6 "initial weight is v (g was set in float32)"
            use _ = torch.no_grad()
            let g = required "weight_g" lin.weight_g
            g.mul_(torch.tensor(2.0, dtype = ScalarType.Float64)) |> ignore
            let rows = lin.Weight().norm(1)
            let expected = g
            Expect.isLessThan (maxAbsDiff rows expected) 1e-12 "row norms equal g"
        }

        test "variational dropout: fixed mask, locked over time, none in eval" {
            use scope = torch.NewDisposeScope()
            torch.manual_seed(1L) |> ignore
            let x = torch.ones([| 2L; 50L; 8L |], dtype = ScalarType.Float64)
            let mask = VariationalDropout.Mask([| 2L; 1L; 8L |], 0.5, true, x)
            let y = VariationalDropout.Apply(x, mask)
            Expect.isLessThan (maxAbsDiff (y.narrow(1L, 0L, 1L).expand_as(y)) y) 1e-15 "same mask at every time step"
            let values = y.data<float>().ToArray() |> Array.distinct |> Array.sort |> List.ofArray
            Expect.equal values [ 0.0; 2.0 ] "entries are 0 or 1/(1-p)"
            Expect.isNone (Option.ofObj (VariationalDropout.Mask([| 2L; 1L; 8L |], 0.5, false, x))) "no mask when not training"
        }

        test "adaptive softmax: log-probabilities normalise and Nll agrees with them" {
            use scope = torch.NewDisposeScope()
            torch.manual_seed(5L) |> ignore
            let clusters = AdaptiveClusters(30L, 8L, 6L, [| 10; 20 |], 2)
            use emb = new AdaptiveEmbedding(clusters, initStd = 0.3, projInitStd = 0.3)
            use soft = new AdaptiveLogSoftmax(clusters, initStd = 0.3, projInitStd = 0.3)
            emb.``to``(ScalarType.Float64) |> ignore
            soft.``to``(ScalarType.Float64) |> ignore
            let hidden = randn 1 [| 12L; 6L |]
            let target = torch.tensor([| 0L; 3L; 6L; 9L; 12L; 15L; 18L; 21L; 24L; 27L; 29L; 11L |])
            let lp = soft.LogProbs(hidden, emb.Weights())
            Expect.isLessThan (maxAbsDiff (lp.exp().sum(1)) (torch.ones(12L, dtype = ScalarType.Float64))) 1e-12 "rows sum to 1"
            let nll = soft.Nll(hidden, target, emb.Weights())
            let direct = -lp.gather(1L, target.unsqueeze(1L)).squeeze(1L)
            Expect.isLessThan (maxAbsDiff nll direct) 1e-12 "Nll = -log p(target)"
            Expect.equal (emb.Forward(torch.tensor([| 0L; 15L; 29L |])).shape) [| 3L; 6L |] "embedding projects to d_proj"
        }

        test "adaptive embedding and softmax parameter counts" {
            use scope = torch.NewDisposeScope()
            let v, d, dp = 30L, 8L, 6L
            let clusters = AdaptiveClusters(v, d, dp, [| 10; 20 |], 2)
            use emb = new AdaptiveEmbedding(clusters)
            use soft = new AdaptiveLogSoftmax(clusters)
            // tables 10x8 + 10x4 + 10x2, projections 6x(8+4+2)
            Expect.equal (paramCount emb) (10L * 8L + 10L * 4L + 10L * 2L + dp * (8L + 4L + 2L)) "embedding"
            // biases V, head projection 6x8 (untied), cluster weight 2x8 and bias 2
            Expect.equal (paramCount soft) (v + dp * 8L + 2L * 8L + 2L) "tied softmax"
        }

        test "bad sizes give clear exceptions" {
            use scope = torch.NewDisposeScope()
            Expect.throwsT<System.ArgumentException> (fun () -> AdaptiveClusters(10L, 4L, 4L, [| 5; 3 |]) |> ignore) "decreasing cutoffs"
            use lin = new WeightNormLinear(3L, 2L)
            Expect.throwsT<System.ArgumentException> (fun () -> lin.Forward(torch.zeros(4L, 5L)) |> ignore) "wrong width"
        }
    ]
