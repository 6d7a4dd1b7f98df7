/// Broyden's forms of its step after f: libtorch's ops (products batched with fresh tensors, or row by row into
/// buffers) and the C# form over the tensors' memory (BroydenHostStep).
module Deq.Tests.Solvers.BroydenProductTests

open System
open Expecto
open TorchSharp

open Deq.Solvers
open Deq.FSharp
open Deq.Tests.Support.Generators

// A solve with Broyden's step in a given form: libtorch's, its products row by row into buffers or batched, or C#'s
// (V implicit until the ring wraps, or explicit).
let private withForm (rowWise: bool) (host: bool) (implicitV: bool) (solve: Solver) f (z0: Tensor) =
    Broyden.ForceRowWise <- Nullable rowWise
    Broyden.ForceHostStep <- Nullable host
    Broyden.ForceImplicitV <- Nullable implicitV
    try Solver.run solve f z0
    finally
        Broyden.ForceRowWise <- Nullable()
        Broyden.ForceHostStep <- Nullable()
        Broyden.ForceImplicitV <- Nullable()

let private withRows rows = withForm rows false false
let private withHost host = withForm false host false
let private withImplicitV = withForm false true true

// Broyden's paths: a full ring, a wrapping one, line search, safeguard, an element that turns NaN, a width that
// leaves a tail after the SIMD vectors whatever their length, and libtorch's form taking some steps.
let private cases () =
    let tanh = snd ({ TanhProblem.Seed = 5; N = 12; Batch = 4; Rho = 0.95 }.Build())
    let tanh13 = snd ({ TanhProblem.Seed = 6; N = 13; Batch = 3; Rho = 0.9 }.Build())
    [ "memory 30", BroydenOptions(), tanh, 4L, 12L
      "width 13, memory 9", BroydenOptions(Memory = 9), tanh13, 3L, 13L
      "memory 3, the ring wraps", BroydenOptions(Memory = 3), tanh, 4L, 12L
      "line search", BroydenOptions(Memory = 3, LineSearch = true), tanh, 4L, 12L
      "safeguard", BroydenOptions(Memory = 4, Safeguard = 10.0), tanh, 4L, 12L
      "element 1 turns NaN", BroydenOptions(Memory = 3), elementOneTurnsNaN (), 3L, 6L
      "f returns a view every fifth call", BroydenOptions(Memory = 9), aViewEveryFifth tanh13, 3L, 13L ]

[<Tests>]
let products =
    testList "Broyden's products" [
        test "row by row into buffers gives the iterates of the batched form to the bit (ring wrap, line search, safeguard, a NaN element; float64 and float32)" {
            use scope = torch.NewDisposeScope()
            let mutable compared = 0
            for dtype in [ ScalarType.Float64; ScalarType.Float32 ] do
                for name, bo, f, b, n in cases () do
                    let f (z: Tensor) = (f (z.``to``(ScalarType.Float64))).``to``(dtype)
                    let solve = Broyden.Create(SolverOptions(Tol = 1e-30, MaxIter = 25), bo)
                    let z0 = torch.zeros([| b; n |], dtype = dtype)
                    let batched = withRows false solve f z0
                    let rows = withRows true solve f z0
                    let what = $"{name}, {dtype}"
                    Expect.equal rows.StatusPerElement batched.StatusPerElement what
                    Expect.equal rows.StepsPerElement batched.StepsPerElement what
                    Expect.equal (bits rows.Value) (bits batched.Value) $"{what}: the same best iterate, bit for bit"
                    compared <- compared + 1
            Expect.equal compared 14 "every case ran both ways"
        }

        test "Broyden's step in C#, V explicit or implicit, takes the steps of libtorch's form, its iterates equal to round-off (float64; float32 to its own), a NaN element included" {
            use scope = torch.NewDisposeScope()
            for dtype, tol in [ ScalarType.Float64, 1e-12; ScalarType.Float32, 1e-4 ] do
                for name, bo, f, b, n in cases () do
                    let f (z: Tensor) = (f (z.``to``(ScalarType.Float64))).``to``(dtype)
                    let solve = Broyden.Create(SolverOptions(Tol = 1e-30, MaxIter = 25), bo)
                    // A broadcast z0 (InitialGuess.Zeros) for the C# forms: their first step copies it to stay in C#.
                    let z0 = torch.zeros([| b; n |], dtype = dtype)
                    let broadcast = InitialGuess.Zeros([| b; n |], dtype, torch.CPU)
                    let libtorch = withHost false solve f z0
                    for form, host in [ "V explicit", withHost true solve f broadcast; "V implicit", withImplicitV solve f broadcast ] do
                        let what = $"{name}, {dtype}, {form}"
                        Expect.equal host.StatusPerElement libtorch.StatusPerElement what
                        Expect.equal host.StepsPerElement libtorch.StepsPerElement what
                        Expect.isLessThan (maxAbsDiff host.Value libtorch.Value) tol $"{what}: the best iterates"
        }

        test "Broyden's step in C# gives the same bits on one thread and on two (elements in parallel)" {
            use scope = torch.NewDisposeScope()
            // Rows of 2 048 and up to 11 slots: large enough for the parallel form.
            let f = snd ({ TanhProblem.Seed = 8; N = 2048; Batch = 3; Rho = 0.9 }.Build())
            let solve = Broyden.Create(SolverOptions(Tol = 1e-30, MaxIter = 12), BroydenOptions(Memory = 5))
            let z0 = torch.zeros([| 3L; 2048L |], dtype = ScalarType.Float64)
            let threads = torch.get_num_threads()
            let libtorch = withHost false solve f z0
            for form, solveIn in [ "V explicit", withHost true; "V implicit", withImplicitV ] do
                let run n =
                    torch.set_num_threads n
                    try solveIn solve f z0 finally torch.set_num_threads threads
                let one, two = run 1, run 2
                Expect.equal two.StepsPerElement one.StepsPerElement $"{form}: steps"
                Expect.equal (bits two.Value) (bits one.Value) $"{form}: the best iterate, bit for bit"
                Expect.isLessThan (maxAbsDiff one.Value libtorch.Value) 1e-12 $"{form}: and libtorch's form's to round-off"
        }

        test "V is kept implicit where rows are long against the slots, and only there" {
            Expect.isTrue (Broyden.ImplicitPays(30720L, 19)) "h 512's rows of 30 720 with 19 slots"
            Expect.isFalse (Broyden.ImplicitPays(128L, 29)) "the toy's rows of 128 with 29 slots"
        }

        test "the step runs in C# for CPU float32 and float64 factors of any size" {
            use scope = torch.NewDisposeScope()
            let suit (shape: int64[]) (dtype: ScalarType) = BroydenHostStep.Suit(torch.empty(shape, dtype = dtype))
            Expect.isTrue (suit [| 64L; 30L; 128L |] ScalarType.Float32) "the toy's factors"
            Expect.isTrue (suit [| 4L; 30L; 30720L |] ScalarType.Float64) "h 512's"
            Expect.isFalse (suit [| 64L; 30L; 128L |] ScalarType.Float16) "float16"
            Expect.isFalse (BroydenHostStep.Suit(torch.empty([| 4L; 30L; 8L |]).transpose(1L, 2L))) "factors that are not contiguous"
        }

        test "the row form is chosen where a fresh product would be new pages, and only there" {
            use scope = torch.NewDisposeScope()
            let rowWise (b: int64) (n: int64) (dtype: ScalarType) = Broyden.ProductsRowWise(torch.zeros([| 1L |], dtype = Nullable dtype), b, n)
            match Deq.Native.FreedMemory.ThresholdBytes |> Option.ofNullable with
            | Some threshold when threshold <= 128 * 1024 ->
                Expect.isTrue (rowWise 4L 30720L ScalarType.Float32) "h 512's [4, 30720]: 480 KiB, rows of 120 KiB"
                Expect.isFalse (rowWise 64L 128L ScalarType.Float32) "the toy's [64, 128]: 32 KiB, on the heap"
                Expect.isFalse (rowWise 512L 256L ScalarType.Float32) "rows of 1 KiB: a call per row would cost more"
            | _ -> Expect.isFalse (rowWise 4L 30720L ScalarType.Float32) "no mmap threshold set: fresh tensors come from the heap"
        }
    ]
