/// The memory savings of issue 11 change no values: f's in-place path without grad, the zero initial guess
/// that holds no memory, a cell's Release, and a fallback that frees its start.
module Deq.Tests.Models.LeanMemoryTests

open System
open Expecto
open TorchSharp

open Deq.Solvers
open Deq.Implicit
open Deq.Models
open Deq.FSharp
open Deq.Tests.Support.Generators
open Deq.Tests.Models.ModelFixtures

/// f(z) with grad on (out of place, as backward needs) and off (in place), in training mode with every dropout mask set.
let private bothPaths (f: Tensor -> Tensor) (z: Tensor) =
    let withGrad = (f (z.detach().requires_grad_(true))).detach()
    use _ = torch.no_grad()
    withGrad, f z

[<Tests>]
let tests =
    testList "lean memory changes no values" [
        test "DEQ-Transformer f: the in-place path without grad equals the graph-building one (memory, dropout everywhere)" {
            use scope = torch.NewDisposeScope()
            use m = transformer 21 (Tiny.Transformer(dropout = 0.2, dropAtt = 0.2))
            m.train()
            let memory = Some (DeqTransformerLM.forward m (tokens 22 2 5 20) None (tight (Adjoint.Unrolled 3))).Memory
            let cell = DeqTransformerLM.bind m (tokens 23 2 5 20) memory
            Expect.isNotNull cell.Masks.AttentionProbs "the attention-probability mask is set"
            let withGrad, inPlace = bothPaths (TransformerCell.f cell) (randn 24 [| 2L; 5L; 8L |])
            Expect.isLessThan (maxAbsDiff withGrad inPlace) 1e-15 "same values"
        }

        test "DEQ-TrellisNet f: the in-place path without grad equals the graph-building one (memory, dropout on h and the weights)" {
            use scope = torch.NewDisposeScope()
            use m = trellis 25 (Tiny.Trellis(dropoutH = 0.2, weightDrop = 0.2))
            m.train()
            // Batch 9: the path without grad runs in two pieces of the batch.
            for b, t in [ 2, 1; 2, 5; 9, 5 ] do
                let memory = Some (DeqTrellisNetLM.forward m (tokens 28 b 5 20) None (tight (Adjoint.Unrolled 3))).Memory
                let cell = DeqTrellisNetLM.bind m (tokens 26 b t 20) memory
                let z = randn 27 [| int64 b; int64 t; 20L |]
                let withGrad, inPlace = bothPaths (TrellisNetCell.f cell) z
                // Not bit-equal: the in-place path's addcmul_ may fuse its multiply-add where the graph's does not.
                Expect.isLessThan (maxAbsDiff withGrad inPlace) 1e-15 $"same values, batch {b}, T = {t}"
                // Later calls without grad reuse the weight the first one made (once per Bind), in its own scope.
                let again = (use _ = torch.no_grad() in use inner = torch.NewDisposeScope() in inner.MoveToOuter(TrellisNetCell.f cell z))
                Expect.equal (maxAbsDiff inPlace again) 0.0 $"a later call, batch {b}, T = {t}"
        }

        test "DEQ-TrellisNet f: a piece of the batch gives the whole batch's rows exactly (what f's pieces rely on)" {
            use scope = torch.NewDisposeScope()
            use _ = torch.no_grad()
            use m = trellis 29 (Tiny.Trellis(kernel = 3))
            let x, z = tokens 30 9 6 20, randn 31 [| 9L; 6L; 20L |]
            let whole = TrellisNetCell.f (DeqTrellisNetLM.bind m x None) z
            for start, length in [ 0L, 5L; 5L, 4L; 3L, 2L ] do
                let rows (t: Tensor) = t.narrow(0L, start, length)
                let piece = TrellisNetCell.f (DeqTrellisNetLM.bind m (rows x) None) (rows z)
                Expect.equal (maxAbsDiff piece (rows whole)) 0.0 $"rows {start} to {start + length - 1L}"
        }

        test "DEQ-TrellisNet f channels first equals the [B, T, C] formulation exactly, values and vector-Jacobian products" {
            use scope = torch.NewDisposeScope()
            use m = trellis 40 (Tiny.Trellis(dropoutH = 0.2))
            m.train()
            let memory = Some (DeqTrellisNetLM.forward m (tokens 41 2 5 20) None (tight (Adjoint.Unrolled 3))).Memory
            let cell = DeqTrellisNetLM.bind m (tokens 42 2 5 20) memory
            let hs = cell.LeftH.shape[2]
            let mask (t: Tensor) = match Option.ofObj cell.HiddenMask with Some k -> t * k | None -> t
            // The formulation before the layout change, on the same parameters, injection and carried states.
            let reference (z: Tensor) =
                let h, c = z.narrow(2L, 0L, hs), z.narrow(2L, hs, hs)
                let full = m.trellisnet.full_conv
                let padded = torch.cat([| mask cell.LeftH; mask h |], 1L)
                let conv = torch.nn.functional.conv1d(padded.transpose(1L, 2L), full.Weight(), full.bias).transpose(1L, 2L)
                let cPrev = torch.cat([| cell.LastC; c.narrow(1L, 0L, c.shape[1] - 1L) |], 1L)
                let gates = (cell.Injection + conv).chunk(4L, -1L)
                let cNew = torch.sigmoid(gates[3]) * cPrev + torch.sigmoid(gates[0]) * torch.tanh(gates[2])
                torch.cat([| torch.sigmoid(gates[1]) * torch.tanh(cNew); cNew |], -1L)
            let z = (randn 43 [| 2L; 5L; 20L |]).requires_grad_(true)
            let g = randn 44 [| 2L; 5L; 20L |]
            let vjp (f: Tensor -> Tensor) =
                let out = f z
                out.detach().clone(), torch.autograd.grad([| out |], [| z |], [| g |]).[0]
            let fNew, jNew = vjp (TrellisNetCell.f cell)
            let fOld, jOld = vjp reference
            Expect.equal (maxAbsDiff fNew fOld) 0.0 "f"
            Expect.equal (maxAbsDiff jNew jOld) 0.0 "J^T g"
        }

        test "InitialGuess.Zeros holds one element, refuses writes, and solves and differentiates exactly as zeros do" {
            use scope = torch.NewDisposeScope()
            let shape = [| 3L; 4L; 5L |]
            let z0 = InitialGuess.Zeros(shape, ScalarType.Float64, torch.CPU)
            Expect.sequenceEqual z0.shape shape "shape"
            Expect.sequenceEqual (z0.stride()) [| 0L; 0L; 0L |] "a broadcast of one element"
            Expect.throws (fun () -> z0.add_(torch.ones(shape, dtype = ScalarType.Float64)) |> ignore) "an elementwise in-place write is refused"
            let run (start: Tensor) =
                use w = randn 28 [| 5L; 5L |]
                let w = (w * 0.2).requires_grad_(true)
                use x = randn 29 shape
                let f (z: Tensor) = torch.tanh(torch.matmul(z, w) + x)
                let eq = Equilibrium.Solve(Func<_, _>(f), start, EquilibriumOptions())
                Equilibrium.Backward(eq.Z.square().sum())
                eq.Z.detach().clone(), (gradOf w).clone(), eq.Forward.Steps
            let zA, gA, sA = run z0
            let zB, gB, sB = run (torch.zeros(shape, dtype = ScalarType.Float64))
            Expect.equal sA sB "steps"
            Expect.equal (maxAbsDiff zA zB) 0.0 "z*"
            Expect.equal (maxAbsDiff gA gB) 0.0 "gradient"
        }

        test "a cell's Release frees its injection; f and NextMemory then refuse in one line" {
            use scope = torch.NewDisposeScope()
            use mt = transformer 30 tinyTransformerConfig
            let tc = DeqTransformerLM.bind mt (tokens 31 2 5 20) None
            let injection = tc.Injection
            tc.Release()
            Expect.isTrue injection.IsInvalid "the Transformer's injection is freed"
            let e = Expect.throwsC (fun () -> TransformerCell.f tc (randn 32 [| 2L; 5L; 8L |]) |> ignore) id
            Expect.stringContains e.Message "after Release()" "f names the cause"
            let e = Expect.throwsC (fun () -> tc.NextMemory(randn 33 [| 2L; 5L; 8L |], 5L) |> ignore) id
            Expect.stringContains e.Message "take the memory first" "NextMemory names the fix"
            use mn = trellis 34 tinyTrellisConfig
            let nc = DeqTrellisNetLM.bind mn (tokens 35 2 5 20) None
            // The weight f makes for its calls without grad joins the Bind's scope (one more tensor there), and Release frees it.
            let bound = scope.DisposablesCount
            let _ = (use _ = torch.no_grad() in use inner = torch.NewDisposeScope() in TrellisNetCell.f nc (randn 36 [| 2L; 5L; 20L |]) |> ignore)
            Expect.equal scope.DisposablesCount (bound + 1) "the solver's weight belongs to the Bind's scope"
            TrellisNetCell.release nc
            Expect.equal scope.DisposablesCount (bound - 1) "Release frees the injection and the solver's weight"
            let e = Expect.throwsC (fun () -> TrellisNetCell.f nc (randn 36 [| 2L; 5L; 20L |]) |> ignore) id
            Expect.stringContains e.Message "after Release()" "TrellisNet f names the cause"
        }

        test "a fallback frees the start it is handed once it has started, with the same result; a wrapped solver keeps it" {
            use scope = torch.NewDisposeScope()
            use w = randn 37 [| 6L; 6L |]
            let w = w * 0.3
            use x = randn 38 [| 4L; 6L |]
            let f = Func<Tensor, Tensor>(fun z -> torch.tanh(torch.matmul(z, w) + x))
            let anderson = Anderson.Create(SolverOptions(MaxIter = 20, Tol = 1e-10))
            let start = randn 39 [| 4L; 6L |]
            let expected = (anderson.Invoke(f, start.clone())).Value
            let handed = start.clone()
            let r = Deq.Solvers.SolveLoop.RunHandingOver(anderson, f, handed)
            Expect.isTrue handed.IsInvalid "the handed-over start is freed"
            Expect.equal (maxAbsDiff r.Value expected) 0.0 "same iterate"
            let kept = start.clone()
            let observed = anderson.Observed(Action<SolverStep>(ignore))
            let r2 = Deq.Solvers.SolveLoop.RunHandingOver(observed, f, kept)
            Expect.isFalse kept.IsInvalid "a solver that is not the loop itself does not take the start"
            Expect.equal (maxAbsDiff r2.Value expected) 0.0 "same iterate through the wrapper"
        }
    ]
