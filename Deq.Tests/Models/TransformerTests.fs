module Deq.Tests.Models.TransformerTests

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

/// Parameter count of a DEQ-Transformer LM with a plain tied softmax and d_embed = d_model.
let private expectedParams (c: DeqTransformerConfig) =
    let v, d, hd, i = int64 c.NToken, int64 c.DModel, int64 (c.NHead * c.DHead), int64 c.DInner
    let embedding = v * d
    let inject = d * 3L * hd + 3L * hd
    let attention = d * 3L * hd + d * hd + hd * d + d + 2L * hd
    let feedForward = d * i + i + i * d + d
    let gains = if c.WeightNorm then 3L * hd + hd + d + i + d else 0L
    embedding + inject + attention + feedForward + gains + v

[<Tests>]
let shapes =
    testList "DEQ-Transformer shapes and sizes" [
        test "parameter count matches the formula, with and without weight norm" {
            use scope = torch.NewDisposeScope()
            for wn in [ false; true ] do
                let c = Tiny.Transformer(weightNorm = wn)
                use m = transformer 1 c
                Expect.equal (paramCount m) (expectedParams c) $"weight norm {wn}"
        }

        test "forward returns [B, T, d] features, memory of min(mem_len, seen) positions, and a scalar loss" {
            use scope = torch.NewDisposeScope()
            use m = transformer 2 tinyTransformerConfig
            let x = tokens 1 3 4 20
            let out1 = m.Forward(x, null, tight (Adjoint.Implicit()))
            Expect.equal out1.Hidden.shape [| 3L; 4L; 8L |] "hidden"
            Expect.equal out1.Memory.Z.shape [| 3L; 4L; 8L |] "memory after 4 tokens"
            Expect.equal out1.Memory.Injection.shape [| 3L; 4L; 24L |] "memory injection"
            let out2 = m.Forward(tokens 2 3 4 20, out1.Memory, tight (Adjoint.Implicit()))
            Expect.equal out2.Memory.Z.shape [| 3L; 5L; 8L |] "memory capped at mem_len 5"
            Expect.isFalse out2.Memory.Z.requires_grad "memory is detached"
            let loss = m.Loss(out2.Hidden, tokens 3 3 4 20)
            Expect.equal loss.shape [||] "scalar loss"
            Expect.isTrue (Double.IsFinite(loss.item<float>())) "finite loss"
        }

        test "paper presets have the published sizes (parameter formulas, no allocation)" {
            // Medium: adaptive embedding, cutoffs [20000, 40000, 200000], div_val 4, d 700 -> widths 700, 175, 43, 10.
            let c = DeqTransformerConfig.Wt103Medium
            Expect.equal (c.DModel, c.NHead, c.DHead, c.DInner, c.MemLen, c.SeqLen) (700, 10, 70, 46000, 150, 150) "medium"
            let small = DeqTransformerConfig.Wt103Small
            let smallCount = expectedParams small
            Expect.isTrue (abs (float smallCount - 138e6) < 2e6) $"small has about 138M parameters ({smallCount})"
        }

        test "bad input is reported clearly" {
            use scope = torch.NewDisposeScope()
            use m = transformer 3 tinyTransformerConfig
            Expect.throwsT<ArgumentOutOfRangeException> (fun () -> m.Forward(torch.tensor([| 0L; 25L |]).reshape(1L, 2L), null, unrolled 2) |> ignore) "token out of range"
            Expect.throwsT<ArgumentException> (fun () -> m.Forward(torch.zeros(4L, dtype = ScalarType.Int64), null, unrolled 2) |> ignore) "1-d tokens"
            Expect.throwsT<ArgumentOutOfRangeException> (fun () -> DeqTransformerConfig(DModel = 0).Validate() |> ignore) "d_model 0"
        }
    ]

/// A case: a seed, a cut position t (outputs at <= t must ignore everything after), with or without memory.
let private causalCases =
    gen {
        let! seed = Gen.choose (0, 100000)
        let! t = Gen.choose (0, 4)
        let! withMemory = Gen.elements [ false; true ]
        return seed, t, withMemory
    } |> Arb.fromGen

/// Replaces positions after t of a [B, T, ...] tensor by those of another.
let private changeAfter (t: int) (a: Tensor) (b: Tensor) =
    torch.cat([| upTo t a; from (t + 1) b |], 1L)

[<Tests>]
let causality =
    testList "DEQ-Transformer causality" [
        testPropertyWithConfig (fsConfig 8) "f, the unrolled stack and the equilibrium at t ignore inputs after t" <|
            Prop.forAll causalCases (fun (seed, t, withMemory) ->
                use scope = torch.NewDisposeScope()
                use _ = torch.no_grad()
                use m = transformer 11 tinyTransformerConfig
                let memory : TransformerMemory | null = if withMemory then m.Forward(tokens (seed + 1) 2 3 20, null, unrolled 4).Memory else null
                let xa = tokens seed 2 6 20
                let xb = torch.cat([| upTo t xa; from (t + 1) (tokens (seed + 2) 2 6 20) |], 1L)
                let ca, cb = m.Bind(xa, memory), m.Bind(xb, memory)
                let za = randn (seed + 3) [| 2L; 6L; 8L |]
                let zb = changeAfter t za (randn (seed + 4) [| 2L; 6L; 8L |])
                let fa, fb = ca.F.Invoke za, cb.F.Invoke zb
                Expect.isLessThan (maxAbsDiff (upTo t fa) (upTo t fb)) 1e-13 "f"
                Expect.isGreaterThan (maxAbsDiff fa fb) 1e-6 "the change does reach later positions"
                let ua, ub = m.Forward(xa, memory, unrolled 5), m.Forward(xb, memory, unrolled 5)
                Expect.isLessThan (maxAbsDiff (upTo t ua.Hidden) (upTo t ub.Hidden)) 1e-13 "unrolled"
                let ea, eb = m.Forward(xa, memory, tight (Adjoint.Implicit())), m.Forward(xb, memory, tight (Adjoint.Implicit()))
                // Solvers mix positions (Broyden's updates are global), so causality holds up to the residual.
                let residual = ea.Equilibrium.Forward.AbsLowest + eb.Equilibrium.Forward.AbsLowest
                Expect.isLessThan residual 1e-5 $"solved: {ea.Equilibrium.Forward} / {eb.Equilibrium.Forward}"
                Expect.isLessThan (maxAbsDiff (upTo t ea.Hidden) (upTo t eb.Hidden)) (1e3 * residual + 1e-12) "equilibrium (up to solver tolerance)")
    ]

[<Tests>]
let equilibrium =
    testList "DEQ-Transformer equilibrium" [
        test "an untrained model reaches its fixed point with Broyden" {
            use scope = torch.NewDisposeScope()
            use _ = torch.no_grad()
            use m = transformer 4 (Tiny.Transformer(dModel = 16, dHead = 8, dInner = 32, initStd = 0.25))
            let cell = m.Bind(tokens 5 2 8 20, null)
            let r = Broyden.Create(SolverOptions(MaxIter = 60, Tol = 1e-8)).Invoke(cell.F, cell.Z0)
            Expect.isTrue r.Converged $"{r}"
            let residual = (cell.F.Invoke r.Value - r.Value).norm().item<float>() / (cell.F.Invoke r.Value).norm().item<float>()
            Expect.isLessThan residual 1e-7 "relative residual of the returned z"
        }

        test "memory carried across segments equals running the concatenation (mem_len >= previous length)" {
            use scope = torch.NewDisposeScope()
            use _ = torch.no_grad()
            use m = transformer 6 tinyTransformerConfig
            let x = tokens 7 2 7 20
            let full = m.Forward(x, null, tight (Adjoint.Implicit()))
            let a = m.Forward(upTo 2 x, null, tight (Adjoint.Implicit()))
            let b = m.Forward(from 3 x, a.Memory, tight (Adjoint.Implicit()))
            Expect.isLessThan (maxAbsDiff a.Hidden (upTo 2 full.Hidden)) 1e-9 "first segment"
            Expect.isLessThan (maxAbsDiff b.Hidden (from 3 full.Hidden)) 1e-9 "second segment, through memory"
            // A memory shorter than the history truncates the attention span, so the result differs.
            use short = transformer 6 (Tiny.Transformer(memLen = 1))
            let a1 = short.Forward(upTo 2 x, null, tight (Adjoint.Implicit()))
            let b1 = short.Forward(from 3 x, a1.Memory, tight (Adjoint.Implicit()))
            Expect.isGreaterThan (maxAbsDiff b1.Hidden (from 3 full.Hidden)) 1e-6 "mem_len 1 is not exact"
        }

        test "variational dropout: the solver iterates one fixed function" {
            use scope = torch.NewDisposeScope()
            use m = transformer 8 (Tiny.Transformer(dropout = 0.3, dropAtt = 0.2))
            m.train()
            use _ = torch.no_grad()
            let cell = m.Bind(tokens 9 2 5 20, null)
            let z = randn 10 [| 2L; 5L; 8L |]
            Expect.equal (maxAbsDiff (cell.F.Invoke z) (cell.F.Invoke z)) 0.0 "same masks on every call"
            let other = m.Bind(tokens 9 2 5 20, null)
            Expect.isGreaterThan (maxAbsDiff (cell.F.Invoke z) (other.F.Invoke z)) 1e-6 "fresh masks per forward pass"
        }
    ]
