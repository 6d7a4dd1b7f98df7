/// Weight norm computed once per Bind, and spectral norm beside it.
module Deq.Tests.Layers.NormalisationTests

open System
open Expecto
open TorchSharp

open Deq.Layers
open Deq.FSharp
open Deq.Tests.Support.Generators
open Deq.Tests.Models.ModelFixtures

let private gradsOf (ps: Modules.Parameter seq) = ps |> Seq.map (fun p -> (gradOf p).clone()) |> List.ofSeq

[<Tests>]
let normalisation =
    testList "weight and spectral norm" [
        test "WeightNormLinear.Bind: same values and gradients as Forward over many applications, one weight" {
            use scope = torch.NewDisposeScope()
            torch.manual_seed(5L) |> ignore
            use lin = new WeightNormLinear(4L, 4L, weightNorm = true)
            lin.``to``(ScalarType.Float64) |> ignore
            let x = randn 1 [| 3L; 4L |]
            // Three applications of the same map, as a solver's f would run.
            let run (apply: Tensor -> Tensor) =
                lin.zero_grad()
                let mutable z = x
                for _ in 1 .. 3 do z <- torch.tanh(apply z)
                z.square().sum().backward()
                z.detach(), gradsOf (lin.parameters())
            let perCall, gPerCall = run (fun z -> lin.Forward z)
            let bound = WeightNormLinear.bind lin
            let once, gOnce = run bound
            Expect.isLessThan (maxAbsDiff perCall once) 1e-15 "values"
            for a, b in List.zip gPerCall gOnce do Expect.isLessThan (maxAbsDiff a b) 1e-14 "gradients reach g and v through every use"
            // The bound map holds the weight of its Bind: a later change of g does not reach it, Forward sees it.
            do
                use _ = torch.no_grad()
                (required "weight_g" lin.weight_g).mul_(torch.tensor(2.0, dtype = ScalarType.Float64)) |> ignore
            Expect.isGreaterThan (maxAbsDiff (bound x) (lin.Forward x)) 1e-3 "computed once, at Bind"
        }

        test "spectral norm: W / sigma has spectral norm 1 after power iteration" {
            use scope = torch.NewDisposeScope()
            use g = generator 11
            let w = torch.randn([| 6L; 9L |], dtype = ScalarType.Float64, generator = g) * 3.0
            let u = SpectralNorm.InitialVector(6L, ScalarType.Float64, generator = g)
            let normalised = SpectralNorm.Apply(w, u, iterations = 200)
            let top = torch.linalg.svdvals(normalised).max().item<float>()
            Expect.floatClose Accuracy.high top 1.0 "largest singular value"
            // A conv-shaped weight [out, in, k] is normalised as [out, in k].
            let c = torch.randn([| 4L; 3L; 2L |], dtype = ScalarType.Float64, generator = g)
            let cu = SpectralNorm.InitialVector(4L, ScalarType.Float64, generator = g)
            let cn = SpectralNorm.Apply(c, cu, iterations = 200)
            Expect.floatClose Accuracy.high (torch.linalg.svdvals(cn.reshape(4L, -1L)).max().item<float>()) 1.0 "conv weight"
        }

        test "spectral norm: the gradient through sigma matches finite differences at a converged u" {
            use scope = torch.NewDisposeScope()
            use g = generator 12
            let w0 = torch.randn([| 5L; 4L |], dtype = ScalarType.Float64, generator = g)
            let probe = torch.randn([| 5L; 4L |], dtype = ScalarType.Float64, generator = g)
            let u = SpectralNorm.InitialVector(5L, ScalarType.Float64, generator = g)
            SpectralNorm.Apply(w0, u, iterations = 500) |> ignore
            let loss (w: Tensor) = (SpectralNorm.Apply(w, u.clone(), iterations = 50) * probe).sum()
            let w = w0.clone().requires_grad_(true)
            loss(w).backward()
            let analytic = gradOf w
            let h = 1e-6
            let numeric = torch.zeros_like(w0)
            use _ = torch.no_grad()
            for i in 0L .. 4L do
                for j in 0L .. 3L do
                    let e = torch.zeros_like(w0)
                    e.[i, j] <- torch.tensor(h, dtype = ScalarType.Float64)
                    numeric.[i, j] <- (loss (w0 + e) - loss (w0 - e)) / (2.0 * h)
            Expect.isLessThan (maxAbsDiff analytic numeric) 1e-7 "d/dW of <W / sigma(W), probe>"
        }

        test "SpectralNormLinear: bound map is 1-Lipschitz; bad sizes are named" {
            use scope = torch.NewDisposeScope()
            torch.manual_seed(2L) |> ignore
            use lin = new SpectralNormLinear(6L, 6L, hasBias = false, initStd = 1.0, powerIterations = 50)
            lin.``to``(ScalarType.Float64) |> ignore
            let f = SpectralNormLinear.bind lin
            let a, b = randn 3 [| 2L; 6L |], randn 4 [| 2L; 6L |]
            let ratio = ((f a - f b).norm(1) / (a - b).norm(1)).max().item<float>()
            Expect.isLessThanOrEqual ratio (1.0 + 1e-6) "||f(a) - f(b)|| <= ||a - b||"
            Expect.throwsT<ArgumentException> (fun () -> f (randn 5 [| 2L; 5L |]) |> ignore) "wrong width"
            Expect.throwsT<ArgumentException> (fun () -> SpectralNorm.Apply(randn 6 [| 3L; 2L |], torch.ones(2L, dtype = ScalarType.Float64)) |> ignore) "u of the wrong size"
        }

        test "weight norm: a row DropConnect drops whole gives a zero row and finite gradients, and the other rows are unchanged" {
            use scope = torch.NewDisposeScope()
            let v = (randn 3 [| 4L; 3L; 2L |]).requires_grad_(true)
            let g = (randn 4 [| 4L |]).requires_grad_(true)
            let mask = torch.ones([| 4L; 3L; 2L |], dtype = ScalarType.Float64)
            mask[1L].zero_() |> ignore
            let w = WeightNorm.Apply(g, v * mask)
            Expect.equal (w[1L].abs().max().item<float>()) 0.0 "the dropped row is zero"
            let reference = v * mask * (g.reshape(4L, 1L, 1L) / (v * mask).square().sum([| 1L; 2L |], keepdim = true).sqrt())
            for r in [ 0L; 2L; 3L ] do
                Expect.equal (maxAbsDiff w[r] reference[r]) 0.0 $"row {r} as g v / ||v||"
            w.sum().backward()
            let vg, gg = gradOf v, gradOf g
            Expect.isTrue (torch.isfinite(vg).all().item<bool>() && torch.isfinite(gg).all().item<bool>()) "finite gradients"
            Expect.equal (vg[1L].abs().max().item<float>()) 0.0 "no gradient into the dropped row"
        }
    ]
