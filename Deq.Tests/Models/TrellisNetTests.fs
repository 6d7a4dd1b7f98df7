module Deq.Tests.Models.TrellisNetTests

open System
open Expecto
open FsCheck.FSharp
open TorchSharp

open Deq.Solvers
open Deq.Implicit
open Deq.Models
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
            let out = m.Forward(tokens 1 3 4 20, null, tight (Adjoint.Implicit()))
            Expect.equal out.Hidden.shape [| 3L; 4L; 6L |] "hidden"
            Expect.equal out.Memory.Z.shape [| 3L; 2L; 20L |] "carried z = [h; c]"
            Expect.equal out.Memory.X.shape [| 3L; 2L; 6L |] "carried inputs"
            Expect.throwsT<ArgumentException> (fun () -> m.Forward(tokens 1 2 4 20, out.Memory, unrolled 2) |> ignore) "batch mismatch"
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
            let memory : TrellisMemory | null = if withMemory then m.Forward(tokens (seed + 1) 2 3 20, null, unrolled 4).Memory else null
            let xa = tokens seed 2 6 20
            let xb = torch.cat([| upTo t xa; from (t + 1) (tokens (seed + 2) 2 6 20) |], 1L)
            let ca, cb = m.Bind(xa, memory), m.Bind(xb, memory)
            let za = randn (seed + 3) [| 2L; 6L; 20L |]
            let zb = torch.cat([| upTo t za; from (t + 1) (randn (seed + 4) [| 2L; 6L; 20L |]) |], 1L)
            let fa, fb = ca.F.Invoke za, cb.F.Invoke zb
            Expect.isLessThan (maxAbsDiff (upTo t fa) (upTo t fb)) 1e-13 "f"
            Expect.isGreaterThan (maxAbsDiff fa fb) 1e-6 "the change reaches later positions"
            let ua, ub = m.Forward(xa, memory, unrolled 5), m.Forward(xb, memory, unrolled 5)
            Expect.isLessThan (maxAbsDiff (upTo t ua.Hidden) (upTo t ub.Hidden)) 1e-13 "unrolled"
            let ea, eb = m.Forward(xa, memory, tight (Adjoint.Implicit())), m.Forward(xb, memory, tight (Adjoint.Implicit()))
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
            let cell = m.Bind(tokens 5 2 8 20, null)
            let r = Broyden.Create(SolverOptions(MaxIter = 60, Tol = 1e-8)).Invoke(cell.F, cell.Z0)
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
                let full = m.Forward(x, null, tight (Adjoint.Implicit()))
                let a = m.Forward(upTo 2 x, null, tight (Adjoint.Implicit()))
                let b = m.Forward(from 3 x, a.Memory, tight (Adjoint.Implicit()))
                Expect.isLessThan (maxAbsDiff b.Hidden (from 3 full.Hidden)) 1e-9 $"k {k}: second segment"
                // A segment shorter than k-1 still carries the right context.
                let c1 = m.Forward(from 3 x |> upTo 0, a.Memory, tight (Adjoint.Implicit()))
                let c2 = m.Forward(from 4 x, c1.Memory, tight (Adjoint.Implicit()))
                Expect.isLessThan (maxAbsDiff c2.Hidden (from 4 full.Hidden)) 1e-9 $"k {k}: after a 1-token segment"
        }

        test "variational dropout and weight drop are fixed within a forward pass" {
            use scope = torch.NewDisposeScope()
            use m = trellis 8 (Tiny.Trellis(dropoutH = 0.3, weightDrop = 0.3, dropoutI = 0.2, embDropout = 0.1))
            m.train()
            use _ = torch.no_grad()
            let cell = m.Bind(tokens 9 2 5 20, null)
            let z = randn 10 [| 2L; 5L; 20L |]
            Expect.equal (maxAbsDiff (cell.F.Invoke z) (cell.F.Invoke z)) 0.0 "same masks on every call"
            let other = m.Bind(tokens 9 2 5 20, null)
            Expect.isGreaterThan (maxAbsDiff (cell.F.Invoke z) (other.F.Invoke z)) 1e-6 "fresh masks per forward pass"
        }
    ]
