/// Broyden's two forms of its low-rank products: batched (fresh tensors) and row by row into buffers.
module Deq.Tests.Solvers.BroydenProductTests

open System
open Expecto
open TorchSharp

open Deq.Solvers
open Deq.FSharp
open Deq.Tests.Support.Generators

let private withRows (rows: bool) (solve: Solver) f (z0: Tensor) =
    Broyden.ForceRowWise <- Nullable rows
    try Solver.run solve f z0
    finally Broyden.ForceRowWise <- Nullable()

let private bits (t: Tensor) =
    t.``to``(ScalarType.Float64).data<float>().ToArray() |> Array.map BitConverter.DoubleToInt64Bits

[<Tests>]
let products =
    testList "Broyden's products" [
        test "row by row into buffers gives the iterates of the batched form to the bit (ring wrap, line search, safeguard, a NaN element; float64 and float32)" {
            use scope = torch.NewDisposeScope()
            let tanh = snd ({ TanhProblem.Seed = 5; N = 12; Batch = 4; Rho = 0.95 }.Build())
            let nan = elementOneTurnsNaN ()
            let cases =
                [ "memory 30", BroydenOptions(), tanh, 4L, 12L
                  "memory 3, the ring wraps", BroydenOptions(Memory = 3), tanh, 4L, 12L
                  "line search", BroydenOptions(Memory = 3, LineSearch = true), tanh, 4L, 12L
                  "safeguard", BroydenOptions(Memory = 4, Safeguard = 10.0), tanh, 4L, 12L
                  "element 1 turns NaN", BroydenOptions(Memory = 3), nan, 3L, 6L ]
            let mutable compared = 0
            for dtype in [ ScalarType.Float64; ScalarType.Float32 ] do
                for name, bo, f, b, n in cases do
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
            Expect.equal compared 10 "every case ran both ways"
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
