module Deq.Tests.Models.TrellisNetTests

open System
open Expecto
open FsCheck.FSharp
open TorchSharp

open Deq.Solvers
open Deq.Implicit
open Deq.Models
open Deq.FSharp
open Deq.Tests.Support.Generators
open Deq.Tests.Models.ModelFixtures

let private unrolled n = tight (Adjoint.Unrolled n)

/// Parameter count of a DEQ-TrellisNet LM with a plain tied softmax.
let private expectedParams (c: DeqTrellisNetConfig) =
    let v, x, h, k = int64 c.NToken, int64 c.NInp, int64 c.HSize, int64 c.KernelSize
    let gains = if c.WeightNorm then 4L * h + 4L * h else 0L
    v * x + (4L * h * x * k + 4L * h) + (4L * h * h * k + 4L * h) + gains + v

[<Tests>]
let shapes =
    testList "DEQ-TrellisNet shapes and sizes" [
        test "parameter count matches the formula, with and without weight norm" {
            use scope = torch.NewDisposeScope()
            for wn in [ false; true ] do
                for k in [ 1; 2; 3 ] do
                    let c = Tiny.Trellis(weightNorm = wn, kernel = k)
                    use m = trellis 1 c
                    Expect.equal (paramCount m) (expectedParams c) $"weight norm {wn}, k {k}"
        }

        test "paper presets: PTB about 24M parameters" {
            let n = expectedParams DeqTrellisNetConfig.Ptb
            Expect.isTrue (abs (float n - 24e6) < 1e6) $"PTB DEQ-TrellisNet has {n} parameters"
        }

        test "forward returns [B, T, nout] features and k-1 carried states and inputs" {
            use scope = torch.NewDisposeScope()
            use m = trellis 2 (Tiny.Trellis(kernel = 3))
            let out = DeqTrellisNetLM.forward m (tokens 1 3 4 20) None (tight (Adjoint.Implicit()))
            Expect.equal out.Hidden.shape [| 3L; 4L; 6L |] "hidden"
            Expect.equal out.Memory.Z.shape [| 3L; 2L; 20L |] "carried z = [h; c]"
            Expect.equal out.Memory.X.shape [| 3L; 2L; 6L |] "carried inputs"
            Expect.throwsT<ArgumentException> (fun () -> DeqTrellisNetLM.forward m (tokens 1 2 4 20) (Some out.Memory) (unrolled 2) |> ignore) "batch mismatch"
        }
    ]

let private causalCases =
    gen {
        let! seed = Gen.choose (0, 100000)
        let! t = Gen.choose (0, 4)
        let! k = Gen.choose (1, 3)
        let! withMemory = Gen.elements [ false; true ]
        return seed, t, k, withMemory
    } |> Arb.fromGen

[<Tests>]
let causality =
    testPropertyWithConfig (fsConfig 12) "DEQ-TrellisNet: f, the unrolled stack and the equilibrium at t ignore inputs after t" <|
        Prop.forAll causalCases (fun (seed, t, k, withMemory) ->
            use scope = torch.NewDisposeScope()
            use _ = torch.no_grad()
            use m = trellis 12 (Tiny.Trellis(kernel = k))
            let memory = if withMemory then Some (DeqTrellisNetLM.forward m (tokens (seed + 1) 2 3 20) None (unrolled 4)).Memory else None
            let xa = tokens seed 2 6 20
            let xb = torch.cat([| upTo t xa; from (t + 1) (tokens (seed + 2) 2 6 20) |], 1L)
            let ca, cb = DeqTrellisNetLM.bind m xa memory, DeqTrellisNetLM.bind m xb memory
            let za = randn (seed + 3) [| 2L; 6L; 20L |]
            let zb = torch.cat([| upTo t za; from (t + 1) (randn (seed + 4) [| 2L; 6L; 20L |]) |], 1L)
            let fa, fb = TrellisNetCell.f ca za, TrellisNetCell.f cb zb
            Expect.isLessThan (maxAbsDiff (upTo t fa) (upTo t fb)) 1e-13 "f"
            Expect.isGreaterThan (maxAbsDiff fa fb) 1e-6 "the change reaches later positions"
            let ua, ub = DeqTrellisNetLM.forward m xa memory (unrolled 5), DeqTrellisNetLM.forward m xb memory (unrolled 5)
            Expect.isLessThan (maxAbsDiff (upTo t ua.Hidden) (upTo t ub.Hidden)) 1e-13 "unrolled"
            let ea, eb = DeqTrellisNetLM.forward m xa memory (tight (Adjoint.Implicit())), DeqTrellisNetLM.forward m xb memory (tight (Adjoint.Implicit()))
            let residual = ea.Equilibrium.Forward.AbsLowest + eb.Equilibrium.Forward.AbsLowest
            Expect.isLessThan residual 1e-5 $"solved: {ea.Equilibrium.Forward} / {eb.Equilibrium.Forward}"
            Expect.isLessThan (maxAbsDiff (upTo t ea.Hidden) (upTo t eb.Hidden)) (1e3 * residual + 1e-12) "equilibrium (up to solver tolerance)")

[<Tests>]
let equilibrium =
    testList "DEQ-TrellisNet equilibrium" [
        test "an untrained model reaches its fixed point with Broyden" {
            use scope = torch.NewDisposeScope()
            use _ = torch.no_grad()
            use m = trellis 4 (Tiny.Trellis(width = 16))
            let cell = DeqTrellisNetLM.bind m (tokens 5 2 8 20) None
            let r = Solver.run (Broyden.Create(SolverOptions(MaxIter = 60, Tol = 1e-8))) (TrellisNetCell.f cell) cell.Z0
            Expect.isTrue r.Converged $"{r}"
        }

        // z*_t depends only on x_1..x_t (f is causal and its fixed point is unique), so the first segment's
        // equilibrium is the concatenation's; given exact z* and x at the last k-1 positions, the second
        // segment solves the same equations as the concatenation's tail. Exact up to solver tolerance.
        test "carrying k-1 states and inputs equals running the concatenation, for k = 1, 2, 3" {
            use scope = torch.NewDisposeScope()
            use _ = torch.no_grad()
            for k in [ 1; 2; 3 ] do
                use m = trellis 6 (Tiny.Trellis(kernel = k))
                let x = tokens 7 2 8 20
                let full = DeqTrellisNetLM.forward m x None (tight (Adjoint.Implicit()))
                let a = DeqTrellisNetLM.forward m (upTo 2 x) None (tight (Adjoint.Implicit()))
                let b = DeqTrellisNetLM.forward m (from 3 x) (Some a.Memory) (tight (Adjoint.Implicit()))
                Expect.isLessThan (maxAbsDiff b.Hidden (from 3 full.Hidden)) 1e-9 $"k {k}: second segment"
                // A segment shorter than k-1 still carries the right context.
                let c1 = DeqTrellisNetLM.forward m (from 3 x |> upTo 0) (Some a.Memory) (tight (Adjoint.Implicit()))
                let c2 = DeqTrellisNetLM.forward m (from 4 x) (Some c1.Memory) (tight (Adjoint.Implicit()))
                Expect.isLessThan (maxAbsDiff c2.Hidden (from 4 full.Hidden)) 1e-9 $"k {k}: after a 1-token segment"
        }

        test "variational dropout and weight drop are fixed within a forward pass" {
            use scope = torch.NewDisposeScope()
            use m = trellis 8 (Tiny.Trellis(dropoutH = 0.3, weightDrop = 0.3, dropoutI = 0.2, embDropout = 0.1))
            m.train()
            use _ = torch.no_grad()
            let cell = DeqTrellisNetLM.bind m (tokens 9 2 5 20) None
            let z = randn 10 [| 2L; 5L; 20L |]
            Expect.equal (maxAbsDiff (TrellisNetCell.f cell z) (TrellisNetCell.f cell z)) 0.0 "same masks on every call"
            let other = DeqTrellisNetLM.bind m (tokens 9 2 5 20) None
            Expect.isGreaterThan (maxAbsDiff (TrellisNetCell.f cell z) (TrellisNetCell.f other z)) 1e-6 "fresh masks per forward pass"
        }
    ]

/// f(z) with the implicit adjoint's capture open, so the cell offers its product; returns f(z) and that product.
let private offeredProduct (cell: TrellisNetCell) (z: torch.Tensor) =
    use capture = VectorJacobian.Begin()
    let fz = Equilibrium.Apply(cell.F, z)
    match capture.TakeFor fz with
    | null -> failtest "the cell offers no product"
    | offered -> fz, offered.Product.Invoke offered.Saved

let private productCases =
    gen {
        let! seed = Gen.choose (0, 100000)
        let! k = Gen.choose (1, 3)
        let! batch = Gen.elements [ 1; 2; 3; 5; 9 ]
        let! t = Gen.elements [ 1; 2; 6 ]
        let! dropout = Gen.elements [ false; true ]
        return seed, k, batch, t, dropout
    } |> Arb.fromGen

[<Tests>]
let offeredProducts =
    testList "DEQ-TrellisNet: the vector-Jacobian product it offers the implicit adjoint" [
        testPropertyWithConfig (fsConfig 20) "equals autograd's, in pieces of the batch, with and without dropout and DropConnect (float64, to the bit)" <|
            Prop.forAll productCases (fun (seed, k, batch, t, dropout) ->
                use scope = torch.NewDisposeScope()
                let p = if dropout then 0.3 else 0.0
                use m = trellis (seed % 97) (Tiny.Trellis(kernel = k, dropoutH = p, weightDrop = p))
                if dropout then m.train() |> ignore
                let cell = DeqTrellisNetLM.bind m (tokens seed batch t 20) None
                let z = (randn (seed + 1) [| int64 batch; int64 t; 20L |]).requires_grad_(true)
                let fz, product = offeredProduct cell z
                let v = randn (seed + 2) fz.shape
                let expected = torch.autograd.grad([| fz |], [| z |], [| v |], retain_graph = true).[0]
                use _ = torch.no_grad()
                let actual = product.Invoke v
                Expect.equal actual.shape expected.shape "shape"
                let dh = maxAbsDiff (actual.narrow(2L, 0L, 10L)) (expected.narrow(2L, 0L, 10L))
                let dc = maxAbsDiff (actual.narrow(2L, 10L, 10L)) (expected.narrow(2L, 10L, 10L))
                Expect.equal (maxAbsDiff actual expected) 0.0 $"J^T v, k {k}, batch {batch}, T {t}, dropout {dropout}: h {dh:E3} c {dc:E3} scale {expected.abs().max().item<float>()}")

        test "the implicit adjoint solves with it: every parameter's gradient equals autograd's product's, to the bit" {
            use scope = torch.NewDisposeScope()
            use m = trellis 11 (Tiny.Trellis(kernel = 3))
            let x, y = tokens 12 9 4 20, tokens 13 9 4 20
            let gradients declined =
                VectorJacobian.Declined <- declined
                try
                    m.zero_grad()
                    let options, report = reporting (tight (Adjoint.Implicit()))
                    let out = DeqTrellisNetLM.forward m x None options
                    Equilibrium.backward (m.Loss(out.Hidden, y))
                    let grads = [ for p in m.parameters() -> (gradOf p).detach().clone() ]
                    grads, Option.get report.Value
                finally
                    VectorJacobian.Declined <- false
            let own, ownReport = gradients false
            let autograd, autogradReport = gradients true
            Expect.isTrue ownReport.OfferedProduct "the solve used the cell's product"
            Expect.isFalse autogradReport.OfferedProduct "declined: autograd's"
            Expect.equal ownReport.Result.Steps autogradReport.Result.Steps "the same adjoint steps"
            for a, b in List.zip own autograd do
                Expect.equal (maxAbsDiff a b) 0.0 "same gradient"
            Expect.isGreaterThan (own |> List.sumBy (fun g -> g.abs().sum().item<float>())) 0.0 "gradients reach the parameters"
        }

        test "a second backward through a retained graph takes autograd's product, with the same gradients" {
            use scope = torch.NewDisposeScope()
            use m = trellis 15 (Tiny.Trellis())
            let reports = ResizeArray()
            let options = { tight (Adjoint.Implicit()) with OnBackward = reports.Add }
            let out = DeqTrellisNetLM.forward m (tokens 16 4 4 20) None options
            let loss = m.Loss(out.Hidden, tokens 17 4 4 20)
            let backward () =
                m.zero_grad()
                loss.backward(retain_graph = true)
                [ for p in m.parameters() -> (gradOf p).detach().clone() ]
            let first = backward ()
            let second = backward ()
            Expect.equal [ for r in reports -> r.OfferedProduct ] [ true; false ] "the cell's product, then autograd's"
            for a, b in List.zip first second do
                Expect.equal (maxAbsDiff a b) 0.0 "same gradient"
        }

        test "only the graph-building application the adjoint captures keeps values for it" {
            use scope = torch.NewDisposeScope()
            use m = trellis 3 (Tiny.Trellis())
            let cell = DeqTrellisNetLM.bind m (tokens 4 2 5 20) None
            Expect.isFalse VectorJacobian.Wanted "no capture open"
            let z = (randn 5 [| 2L; 5L; 20L |]).requires_grad_(true)
            cell.F.Invoke z |> ignore
            use capture = VectorJacobian.Begin()
            Expect.isTrue VectorJacobian.Wanted "a capture is open"
            let other = Equilibrium.Apply(cell.F, z)
            Expect.isNull (box (capture.TakeFor(randn 6 [| 2L; 5L; 20L |]))) "an offer for another tensor than f's output is dropped"
            Expect.isNotNull (box other) "f still returns its output"
        }
    ]
