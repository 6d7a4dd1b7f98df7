/// The reversible solver (McCallum, Arora and Foster, 2025): exact gradients of the steps taken, constant memory.
module Deq.Tests.Implicit.ReversibleTests

open System
open Expecto
open FsCheck.FSharp
open TorchSharp
open Deq.Solvers
open Deq.Implicit
open Deq.FSharp
open Deq.Tests.Support
open Deq.Tests.Support.Generators
open Deq.Tests.Support.DeqProblems
open Deq.Tests.Support.Files

/// f(z, x) of the test layer with its input explicit.
let private fx (l: Layer) (z: Tensor) (x: Tensor) = torch.tanh(torch.matmul(z, l.W.T) + torch.matmul(x, l.U.T) + l.B)

let private parameters (l: Layer) = [ l.W; l.U; l.B ]

/// Exactly n coupled steps (tolerance 0 never stops early on these maps).
let private fixedSteps beta n = { Reversible.defaults with Beta = beta; MaxIterations = n; Tolerance = 0.0 }

let private flatGrads (l: Layer) (z: Tensor) =
    let grads = torch.autograd.grad([| l.Loss z |], Array.ofList l.Leaves)
    torch.cat(grads |> Seq.map (fun g -> g.reshape(-1L)) |> Array.ofSeq, 0L)

/// Autograd through the same n coupled steps, every graph kept.
let private unrolledCoupled (l: Layer) beta n =
    let mutable y = l.Z0
    let mutable z = l.Z0
    for _ in 1 .. n do
        y <- y * (1. - beta) + fx l z l.X * beta
        z <- z * (1. - beta) + fx l y l.X * beta
    z

[<Tests>]
let tests =
    testList "reversible solver" [
        testPropertyWithConfig (fsConfig 8) "its gradient equals autograd through the same coupled steps to 1e-9 (x and every parameter)" <|
            Prop.forAll (layerSpecs 6 0.9) (fun spec ->
                use scope = torch.NewDisposeScope()
                let layer = spec.Build()
                for beta in [ 0.5; 0.8; 1.2 ] do
                    let n = 12
                    let r = Reversible.solve (fixedSteps beta n) (fx layer) layer.X (parameters layer) layer.Z0
                    Expect.equal r.Forward.Steps n "all steps ran"
                    let reversed = flatGrads layer r.Z
                    let unrolled = flatGrads layer (unrolledCoupled layer beta n)
                    Expect.isLessThan (relativeError r.Z (unrolledCoupled layer beta n)) 1e-12 $"beta {beta}: same forward"
                    Expect.isLessThan (relativeError reversed unrolled) 1e-9 $"beta {beta}: relative error vs unrolled autograd")

        test "its gradient matches central finite differences of the n-step map to 1e-6" {
            use scope = torch.NewDisposeScope()
            let layer = { Seed = 11; N = 4; Batch = 2; Rho = 0.8 }.Build()
            let settings = fixedSteps 0.8 10
            let r = Reversible.solve settings (fx layer) layer.X (parameters layer) layer.Z0
            let reversed = flatGrads layer r.Z
            use noGrad = torch.no_grad()
            let loss () = (layer.Loss (Reversible.solve settings (fx layer) layer.X (parameters layer) layer.Z0).Z).item<float>()
            let h = 1e-6
            let fd =
                [| for leaf in layer.Leaves do
                     let flat = leaf.view(-1L)
                     for i in 0L .. flat.shape[0] - 1L do
                         let original = flat[i].item<float>()
                         let set (v: float) = flat[i] <- torch.tensor(v, dtype = ScalarType.Float64)
                         set (original + h)
                         let up = loss ()
                         set (original - h)
                         let down = loss ()
                         set original
                         (up - down) / (2. * h) |]
            Expect.isLessThan (relativeError reversed (torch.tensor(fd, dtype = ScalarType.Float64))) 1e-6 "vs finite differences"
        }

        test "converged, it finds the fixed point, and its gradient approaches the implicit gradient" {
            use scope = torch.NewDisposeScope()
            let layer = { Seed = 5; N = 6; Batch = 3; Rho = 0.7 }.Build()
            let r = Reversible.solve { Reversible.defaults with MaxIterations = 200; Tolerance = 1e-12 } (fx layer) layer.X (parameters layer) layer.Z0
            Expect.equal r.Forward.Status SolverStatus.Converged $"converged: {r.Forward.Reason}"
            let star = Solver.run tight layer.F layer.Z0
            Expect.isLessThan (relativeError r.Z star.Value) 1e-10 "z* of a tight Broyden solve"
            let implicit = flatGrads layer (Equilibrium.solve { Equilibrium.defaults with Forward = tight; Adjoint = Adjoint.Implicit(tight) } layer.F layer.Z0).Z
            Expect.isLessThan (relativeError (flatGrads layer r.Z) implicit) 1e-8 "the implicit gradient at z*"
        }

        test "forward and backward hold one state and one graph at a time: live tensors do not grow with the steps" {
            let peaks n =
                // Finalize other tests' leftover tensors now, not during the count (the finalizer thread runs beside it).
                GC.Collect()
                GC.WaitForPendingFinalizers()
                use scope = torch.NewDisposeScope()
                let layer = { Seed = 2; N = 5; Batch = 2; Rho = 0.8 }.Build()
                let mutable peak = 0L
                let f z x =
                    peak <- max peak torch.Tensor.TotalCount
                    fx layer z x
                let start = torch.Tensor.TotalCount
                let r = Reversible.solve (fixedSteps 0.8 n) f layer.X (parameters layer) layer.Z0
                let forward = peak - start
                let loss = layer.Loss r.Z
                peak <- 0L
                let before = torch.Tensor.TotalCount
                Equilibrium.backward loss
                forward, peak - before
            let (f5, b5), (f40, b40) = peaks 5, peaks 40
            printfn "  extra live tensors at f calls: forward 5 steps %d, 40 steps %d; backward 5 steps %d, 40 steps %d" f5 f40 b5 b40
            Expect.isLessThanOrEqual f40 f5 "forward: constant in the number of steps"
            Expect.isLessThanOrEqual b40 b5 "backward: constant in the number of steps"
        }

        test "as a plain solver value it reaches the same fixed point" {
            use scope = torch.NewDisposeScope()
            let layer = { Seed = 8; N = 5; Batch = 2; Rho = 0.6 }.Build()
            use noGrad = torch.no_grad()
            let r = Solver.run (Reversible.solver (SolverOptions(MaxIter = 200, Tol = 1e-12, Stop = StopMode.Absolute)) 0.8) layer.F layer.Z0
            Expect.isTrue r.Converged $"converged: {r.Reason}"
            Expect.isLessThan (relativeError r.Value (Solver.run tight layer.F layer.Z0).Value) 1e-10 "z*"
        }

        test "bad settings and a wrong f are refused in one line naming the problem" {
            let layer = { Seed = 1; N = 3; Batch = 1; Rho = 0.5 }.Build()
            for beta in [ 1.0; 0.0; 2.0; nan ] do
                throwsWith<ArgumentOutOfRangeException> [ "beta"; "(0, 2)" ] (fun () ->
                    Reversible.solve { Reversible.defaults with Beta = beta } (fx layer) layer.X (parameters layer) layer.Z0 |> ignore) |> ignore
            throwsWith<ArgumentOutOfRangeException> [ "MaxIterations" ] (fun () ->
                Reversible.solve { Reversible.defaults with MaxIterations = 0 } (fx layer) layer.X (parameters layer) layer.Z0 |> ignore) |> ignore
            let e = throwsWith<InvalidOperationException> [ "shape"; "[1, 3]"; "[1, 2]" ] (fun () ->
                        Reversible.solve Reversible.defaults (fun z x -> (fx layer z x).narrow(1L, 0L, 2L)) layer.X (parameters layer) layer.Z0 |> ignore)
            Expect.isFalse (e.Message.Contains "\n") "one line"
        }
    ]
