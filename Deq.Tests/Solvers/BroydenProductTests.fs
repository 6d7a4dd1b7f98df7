/// Broyden's two forms of its low-rank products: batched (fresh tensors) and row by row into buffers.
module Deq.Tests.Solvers.BroydenProductTests

open System
open Expecto
open TorchSharp

open Deq.Solvers
open Deq.FSharp
open Deq.Tests.Support.Generators

// A solve with Broyden's products in a given form: libtorch's row by row into buffers or batched, or the batched
// form's in C#.
let private withForm (rowWise: bool) (host: bool) (solve: Solver) f (z0: Tensor) =
    Broyden.ForceRowWise <- Nullable rowWise
    Broyden.ForceHostProducts <- Nullable host
    try Solver.run solve f z0
    finally
        Broyden.ForceRowWise <- Nullable()
        Broyden.ForceHostProducts <- Nullable()

let private withRows rows = withForm rows false
let private withHost host = withForm false host

// Broyden's paths: a full ring, a wrapping one, line search, safeguard, and an element that turns NaN.
let private cases () =
    let tanh = snd ({ TanhProblem.Seed = 5; N = 12; Batch = 4; Rho = 0.95 }.Build())
    [ "memory 30", BroydenOptions(), tanh, 4L, 12L
      "memory 3, the ring wraps", BroydenOptions(Memory = 3), tanh, 4L, 12L
      "line search", BroydenOptions(Memory = 3, LineSearch = true), tanh, 4L, 12L
      "safeguard", BroydenOptions(Memory = 4, Safeguard = 10.0), tanh, 4L, 12L
      "element 1 turns NaN", BroydenOptions(Memory = 3), elementOneTurnsNaN (), 3L, 6L ]

let private maxAbs (a: Tensor) (b: Tensor) = (a - b).abs().max().``to``(ScalarType.Float64).item<float>()

let private bits (t: Tensor) =
    t.``to``(ScalarType.Float64).data<float>().ToArray() |> Array.map BitConverter.DoubleToInt64Bits

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
            Expect.equal compared 10 "every case ran both ways"
        }

        test "the products in C# equal sum_j (a_j . x) b_j - x over the used rows, into x itself or another tensor (float64)" {
            use scope = torch.NewDisposeScope()
            let g = new torch.Generator(17UL)
            for width in [ 7L; 128L ] do
                for used in [ 1; 3; 5 ] do
                    let a = torch.randn([| 3L; 5L; width |], dtype = ScalarType.Float64, generator = g)
                    let b = torch.randn([| 3L; 5L; width |], dtype = ScalarType.Float64, generator = g)
                    let x = torch.randn([| 3L; width |], dtype = ScalarType.Float64, generator = g)
                    let (au: Tensor), (bu: Tensor) = a.narrow(1, 0L, int64 used), b.narrow(1, 0L, int64 used)
                    let expected = torch.bmm(torch.bmm(x.unsqueeze(1), au.transpose(1, 2)), bu).squeeze(1) - x
                    let into = torch.empty_like(x)
                    let what = $"width {width}, {used} of 5 rows"
                    Expect.isLessThan (maxAbs (HostProducts.Product(x, a, b, used, into)) expected) 1e-12 $"{what}, into another tensor"
                    Expect.isLessThan (maxAbs (HostProducts.Product(x, a, b, used, x)) expected) 1e-12 $"{what}, into x"
        }

        test "Broyden with its products in C# takes the steps of libtorch's products, its iterates equal to round-off (float64), a NaN element included" {
            use scope = torch.NewDisposeScope()
            for name, bo, f, b, n in cases () do
                let solve = Broyden.Create(SolverOptions(Tol = 1e-30, MaxIter = 25), bo)
                let z0 = torch.zeros([| b; n |], dtype = ScalarType.Float64)
                let host, libtorch = withHost true solve f z0, withHost false solve f z0
                Expect.equal host.StatusPerElement libtorch.StatusPerElement name
                Expect.equal host.StepsPerElement libtorch.StepsPerElement name
                Expect.isLessThan (maxAbs host.Value libtorch.Value) 1e-12 $"{name}: the best iterates"
        }

        test "the products run in C# for small CPU factors only" {
            use scope = torch.NewDisposeScope()
            let suit (shape: int64[]) (dtype: ScalarType) = HostProducts.Suit(torch.empty(shape, dtype = dtype))
            Expect.isTrue (suit [| 64L; 30L; 128L |] ScalarType.Float32) "the toy's factors: 0.9 MiB"
            Expect.isFalse (suit [| 4L; 30L; 30720L |] ScalarType.Float32) "h 512's: 14 MiB, BLAS over long rows"
            Expect.isFalse (suit [| 16L; 30L; 1024L |] ScalarType.Float32) "rows of 1024: BLAS's calls pay for themselves"
            Expect.isFalse (suit [| 1024L; 30L; 128L |] ScalarType.Float32) "15 MiB of short rows"
            Expect.isFalse (suit [| 64L; 30L; 128L |] ScalarType.Float16) "float16"
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
