/// Broyden's per-element safeguard on a map where plain Broyden leaves its basin.
module Deq.Tests.Solvers.BroydenSafeguardTests

open Expecto
open TorchSharp

open Deq.Solvers
open Deq.Models
open Deq.Implicit
open Deq.Tests.Support.Generators

/// f of a tiny float64 DEQ-Transformer (d_model 8, seed 11) on two random 6-token sequences with memory:
/// plain iteration converges slowly here, Broyden's steps blow up past its 30-update memory.
let private hardMap () =
    let config = DeqTransformerConfig(NToken = 20, DModel = 8, NHead = 2, DHead = 4, DInner = 16, SeqLen = 5, MemLen = 5, InitStd = 0.3)
    torch.manual_seed(11L) |> ignore
    let m = new DeqTransformerLM(config)
    m.``to``(ScalarType.Float64) |> ignore
    m.eval() |> ignore
    let tokens (seed: int) (t: int) =
        use g = new torch.Generator(uint64 seed, torch.CPU)
        torch.randint(0L, 20L, [| 2L; int64 t |], dtype = ScalarType.Int64, generator = g)
    let memory = m.Forward(tokens 60452 3, null, EquilibriumOptions(Adjoint = Adjoint.Unrolled(4))).Memory
    let cell = m.Bind(tokens 60451 6, memory)
    m, cell.F, cell.Z0

[<Tests>]
let safeguard =
    test "Broyden's safeguard keeps it in its basin where plain Broyden diverges" {
        use scope = torch.NewDisposeScope()
        use _ = torch.no_grad()
        let m, f, z0 = hardMap ()
        use _m = m
        let o = SolverOptions(MaxIter = 100, Tol = 1e-11)
        let plain = Broyden.Create(o).Invoke(f, z0)
        let guarded = Broyden.Create(o, BroydenOptions(Safeguard = 10.0)).Invoke(f, z0)
        Expect.equal plain.StatusPerElement[0] SolverStatus.Diverged $"plain: {plain}"
        Expect.isGreaterThan plain.RelLowest 1e-3 "plain Broyden stalls at its best before the blow-up"
        Expect.isFalse (Array.contains SolverStatus.Diverged guarded.StatusPerElement) $"guarded: {guarded}"
        Expect.isLessThan guarded.RelLowest 1e-4 "the safeguarded one goes on converging"
        Expect.throwsT<System.ArgumentOutOfRangeException> (fun () -> Broyden.Create(broyden = BroydenOptions(Safeguard = 0.5)) |> ignore) "Safeguard in (0, 1] is rejected"
    }
