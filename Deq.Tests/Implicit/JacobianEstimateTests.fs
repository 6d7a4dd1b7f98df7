module Deq.Tests.Implicit.JacobianEstimateTests

open System
open Expecto
open TorchSharp
open Deq.Implicit
open Deq.FSharp
open Deq.Tests.Support.Generators

[<Tests>]
let jacobianEstimates =
    testList "Jacobian estimates" [
        test "Hutchinson's ||J||_F^2 matches the exact value of a linear map and is differentiable" {
            use scope = torch.NewDisposeScope()
            use g = generator 11
            let a = torch.randn([| 5L; 5L |], dtype = ScalarType.Float64, generator = g).requires_grad_(true)
            let f (z: Tensor) = torch.matmul(z, a.T)
            let z = torch.randn([| 3L; 5L |], dtype = ScalarType.Float64, generator = g)
            let estimate = Jacobian.frobeniusNormSquaredWith 4000 (Some g) f z
            let exact = (a * a).sum().item<float>()
            Expect.isLessThan (abs (estimate.item<float>() - exact) / exact) 0.05 "within 5% at 4000 samples"
            Expect.isTrue estimate.requires_grad "usable as a loss term"
            let grad = torch.autograd.grad([| estimate |], [| a |])[0]
            Expect.isTrue (torch.isfinite(grad).all().item<bool>()) "finite gradient"
        }

        test "power iteration finds the spectral radius of a symmetric Jacobian" {
            use scope = torch.NewDisposeScope()
            use g = generator 12
            let q, _ = torch.linalg.qr(torch.randn([| 6L; 6L |], dtype = ScalarType.Float64, generator = g)).ToTuple()
            let eig = torch.tensor([| 0.9; -0.5; 0.3; 0.2; 0.1; 0.0 |], dtype = ScalarType.Float64)
            let a = torch.matmul(torch.matmul(q, torch.diag(eig)), q.T)
            let f (z: Tensor) = torch.matmul(z, a.T)
            let radius = Jacobian.spectralRadiusWith 200 (Some g) f (torch.zeros([| 2L; 6L |], dtype = ScalarType.Float64))
            Expect.equal radius.Length 2 "per batch element"
            for r in radius do Expect.floatClose Accuracy.high r 0.9 "spectral radius 0.9"
        }

        test "bad sample counts are rejected by name" {
            let f : Tensor -> Tensor = id
            let z = torch.zeros([| 1L; 2L |], dtype = ScalarType.Float64)
            Expect.throwsT<ArgumentOutOfRangeException> (fun () -> Jacobian.frobeniusNormSquaredWith 0 None f z |> ignore) "samples"
            Expect.throwsT<ArgumentOutOfRangeException> (fun () -> Jacobian.spectralRadiusWith 0 None f z |> ignore) "iterations"
        }
    ]
