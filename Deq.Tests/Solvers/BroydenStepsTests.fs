/// Broyden kept as its steps alone (BroydenSteps): the form CPU solves with full steps take where the ring cannot wrap.
module Deq.Tests.Solvers.BroydenStepsTests

open System
open Expecto
open TorchSharp

open Deq.Solvers
open Deq.FSharp
open Deq.Tests.Support.Generators

// A solve in the steps form (true) or libtorch's U, V form (false); the steps form must have run when asked for.
let private inForm (steps: bool) (solve: Solver) f (z0: Tensor) =
    BroydenSteps.Force <- Nullable steps
    Broyden.ForceHostStep <- (if steps then Nullable() else Nullable false)
    let started = BroydenSteps.Started
    try
        let r = Solver.run solve f z0
        Expect.equal (BroydenSteps.Started - started) (if steps then 1 else 0) "the form asked for ran"
        r
    finally
        BroydenSteps.Force <- Nullable()
        Broyden.ForceHostStep <- Nullable()

// Full steps: memory 30 against 24 steps at most (the ring cannot wrap), or 3 and 9 (the steps turn into U and V when
// it would). A width that leaves a tail after the SIMD vectors whatever their length, an element that turns NaN, and f
// returning a view. The tolerance: out of reach, or (the NaN case's other elements, on a linear map, reach a residual of
// exactly 0 a step apart in the two forms' round-off) above round-off.
let private cases () =
    let tanh = snd ({ TanhProblem.Seed = 5; N = 12; Batch = 4; Rho = 0.95 }.Build())
    let tanh13 = snd ({ TanhProblem.Seed = 6; N = 13; Batch = 3; Rho = 0.9 }.Build())
    [ "width 12", BroydenOptions(), tanh, 4L, 12L, 1e-30
      "width 13", BroydenOptions(), tanh13, 3L, 13L, 1e-30
      "memory 3, the ring wraps", BroydenOptions(Memory = 3), tanh, 4L, 12L, 1e-30
      "width 13, memory 9, the ring wraps", BroydenOptions(Memory = 9), tanh13, 3L, 13L, 1e-30
      "element 1 turns NaN", BroydenOptions(), elementOneTurnsNaN (), 3L, 6L, 1e-12
      "element 1 turns NaN, the ring wraps", BroydenOptions(Memory = 3), elementOneTurnsNaN (), 3L, 6L, 1e-12
      "f returns a view every fifth call", BroydenOptions(Memory = 9), aViewEveryFifth tanh13, 3L, 13L, 1e-30 ]

[<Tests>]
let steps =
    testList "Broyden kept as its steps" [
        test "takes the steps of libtorch's U, V form, its iterates equal to round-off (float64; float32 to its own), from a broadcast z0 or a tensor, the ring wrapping or not" {
            use scope = torch.NewDisposeScope()
            // float32's round-off decides steps near its floor, so there the solves stop at 1e-5, above it.
            for dtype, tol, floor in [ ScalarType.Float64, 1e-12, 0.0; ScalarType.Float32, 1e-4, 1e-5 ] do
                for name, bo, f, b, n, stop in cases () do
                    let f (z: Tensor) = (f (z.``to``(ScalarType.Float64))).``to``(dtype)
                    let solve = Broyden.Create(SolverOptions(Tol = max stop floor, MaxIter = 25), bo)
                    let z0 = torch.zeros([| b; n |], dtype = dtype)
                    let libtorch = inForm false solve f z0
                    for start, z in [ "a tensor", z0; "a broadcast", InitialGuess.Zeros([| b; n |], dtype, torch.CPU) ] do
                        let steps = inForm true solve f z
                        let what = $"{name}, {dtype}, from {start}"
                        Expect.equal steps.StatusPerElement libtorch.StatusPerElement what
                        Expect.equal steps.StepsPerElement libtorch.StepsPerElement what
                        Expect.equal steps.Evaluations libtorch.Evaluations what
                        Expect.isLessThan (maxAbsDiff steps.Value libtorch.Value) tol $"{what}: the best iterates"
        }

        test "gives the same bits on one thread and on two (elements in parallel), the ring wrapping or not" {
            use scope = torch.NewDisposeScope()
            let f = snd ({ TanhProblem.Seed = 8; N = 2048; Batch = 3; Rho = 0.9 }.Build())
            let z0 = torch.zeros([| 3L; 2048L |], dtype = ScalarType.Float64)
            let threads = torch.get_num_threads()
            for memory in [ 30; 5 ] do
                let solve = Broyden.Create(SolverOptions(Tol = 1e-30, MaxIter = 12), BroydenOptions(Memory = memory))
                let run n =
                    torch.set_num_threads n
                    try inForm true solve f z0 finally torch.set_num_threads threads
                let one, two = run 1, run 2
                Expect.equal two.StepsPerElement one.StepsPerElement $"memory {memory}: steps"
                Expect.equal (bits two.Value) (bits one.Value) $"memory {memory}: the best iterate, bit for bit"
                Expect.isLessThan (maxAbsDiff one.Value (inForm false solve f z0).Value) 1e-12 $"memory {memory}: and libtorch's form's to round-off"
        }

        test "is chosen for full steps on the CPU, and only there" {
            let applies (bo: BroydenOptions) dtype device = BroydenSteps.Applies(bo, dtype, device, 1000L)
            let cpu, f32 = DeviceType.CPU, ScalarType.Float32
            Expect.isTrue (applies (BroydenOptions()) f32 cpu) "the defaults, float32"
            Expect.isTrue (applies (BroydenOptions(Memory = 3)) ScalarType.Float64 cpu) "float64, a small ring"
            Expect.isFalse (applies (BroydenOptions(LineSearch = true)) f32 cpu) "a line search shortens steps"
            Expect.isFalse (applies (BroydenOptions(Safeguard = 10.0)) f32 cpu) "the safeguard resets elements"
            Expect.isFalse (applies (BroydenOptions()) ScalarType.Float16 cpu) "float16"
            Expect.isFalse (applies (BroydenOptions()) f32 DeviceType.CUDA) "an accelerator"
            Expect.isTrue (BroydenSteps.Applies(BroydenOptions(), f32, cpu, int64 Int32.MaxValue / 4L)) "2 GiB of float32 slots"
            Expect.isFalse (BroydenSteps.Applies(BroydenOptions(), f32, cpu, int64 Int32.MaxValue / 4L + 1L)) "more bytes than a span holds"
            Expect.isFalse (BroydenSteps.Applies(BroydenOptions(), ScalarType.Float64, cpu, int64 Int32.MaxValue / 4L)) "float64: twice the bytes"
        }
    ]
