/// The CPU ledger's norms and z0's finiteness check, read from memory in C#, against libtorch's.
module Deq.Tests.Solvers.HostReductionTests

open System
open Expecto
open TorchSharp

open Deq.Solvers
open Deq.Tests.Support.Generators

let private close (expected: Tensor) (actual: float[]) tol what =
    let e = expected.``to``(ScalarType.Float64).data<float>().ToArray()
    Expect.equal actual.Length e.Length $"{what}: rows"
    for i in 0 .. e.Length - 1 do
        Expect.isLessThanOrEqual (abs (actual[i] - e[i])) (tol * (1.0 + abs e[i])) $"{what}: row {i} ({actual[i]} against {e[i]})"

[<Tests>]
let hostReductions =
    testList "host reductions" [
        test "row norms equal libtorch's to round-off: float32 and float64, widths off the vector size, residual given or formed, rows of a history" {
            use scope = torch.NewDisposeScope()
            let g = new torch.Generator(11UL)
            for dtype, tol in [ ScalarType.Float64, 1e-14; ScalarType.Float32, 1e-6 ] do
                for width in [ 1L; 7L; 64L; 133L ] do
                    let f = torch.randn([| 5L; width |], dtype = dtype, generator = g)
                    let z = torch.randn([| 5L; width |], dtype = dtype, generator = g)
                    let what = $"{dtype}, width {width}"
                    Expect.isTrue (HostReductions.Reads(f, ResidualNorm.L2)) $"{what}: read on the host"
                    let struct (d, n) = HostReductions.Rows(f, z)
                    close ((f - z).norm(1)) d tol $"{what}: ||f - z||"
                    close (f.norm(1)) n tol $"{what}: ||f||"
                    let history = torch.randn([| 5L; 3L; width |], dtype = dtype, generator = g)
                    let row = history.select(1, 1L)
                    Expect.isFalse (row.is_contiguous()) "a history row is a strided view"
                    Expect.isTrue (HostReductions.Reads(row, ResidualNorm.L2)) $"{what}: a history row is read on the host"
                    let struct (dGiven, nGiven) = HostReductions.Rows(f, row, otherIsDifference = true)
                    close (row.norm(1)) dGiven tol $"{what}: ||given||"
                    close (f.norm(1)) nGiven tol $"{what}: ||f|| beside a given difference"
        }

        test "non-finite entries give NaN or Inf norms as libtorch's do, and the max norm and other dtypes stay with libtorch" {
            use scope = torch.NewDisposeScope()
            let f = torch.ones([| 3L; 20L |], dtype = ScalarType.Float32)
            let z = torch.zeros([| 3L; 20L |], dtype = ScalarType.Float32)
            f[0L, 3L] <- torch.tensor(Single.NaN)
            f[1L, 19L] <- torch.tensor(Single.PositiveInfinity)
            z[2L, 17L] <- torch.tensor(Single.NegativeInfinity)
            let struct (d, n) = HostReductions.Rows(f, z)
            Expect.isTrue (Double.IsNaN d[0] && Double.IsNaN n[0]) "a NaN entry (in the vector body)"
            Expect.isTrue (Double.IsPositiveInfinity d[1] && Double.IsPositiveInfinity n[1]) "an Inf entry (in the tail)"
            Expect.isTrue (Double.IsPositiveInfinity d[2] && n[2] = sqrt 20.0) "Inf in z only"
            Expect.isFalse (HostReductions.Reads(f, ResidualNorm.Max)) "the max norm"
            Expect.isFalse (HostReductions.Reads(f.to_type(ScalarType.Float16), ResidualNorm.L2)) "float16"
            Expect.isFalse (HostReductions.Reads(f.T, ResidualNorm.L2)) "columns"
        }

        test "tensors over 2 GiB stay with libtorch (TorchSharp's byte span throws beyond): norms, finiteness, Broyden's C# step" {
            use scope = torch.NewDisposeScope()
            // 2.4 GB of address space, never written, so never resident.
            let big = torch.empty([| 2L; 300_000_000L |], dtype = ScalarType.Float32)
            let small = torch.empty([| 2L; 1000L |], dtype = ScalarType.Float32)
            Expect.isFalse (HostReductions.Fits big) "2.4 GB"
            Expect.isTrue (HostReductions.Fits small) "8 KB"
            let threads = torch.get_num_threads()
            torch.set_num_threads 1   // where large tensors are otherwise read on the host
            try Expect.isFalse (HostReductions.Reads(big, ResidualNorm.L2)) "not read on the host"
            finally torch.set_num_threads threads
            Expect.isFalse (HostReductions.AllFinite(big).HasValue) "finiteness asks libtorch"
            Expect.isFalse (BroydenHostStep.Suit(big.reshape(2L, 3L, 100_000_000L))) "Broyden's factors: libtorch's form"
        }

        test "AllFinite agrees with torch.isfinite wherever a NaN or Inf sits; null off its dtypes" {
            use scope = torch.NewDisposeScope()
            for dtype in [ ScalarType.Float32; ScalarType.Float64 ] do
                for size in [ 1L; 8L; 37L ] do
                    Expect.equal (HostReductions.AllFinite(torch.randn([| size |], dtype = dtype))) (Nullable true) $"{dtype} {size}: finite"
                    for at in [ 0L; size / 2L; size - 1L ] do
                        for bad in [ Double.NaN; Double.PositiveInfinity; Double.NegativeInfinity ] do
                            let t = torch.randn([| size |], dtype = dtype)
                            t[at] <- torch.tensor(bad, dtype = dtype)
                            Expect.equal (HostReductions.AllFinite t) (Nullable false) $"{dtype} {size}: {bad} at {at}"
            Expect.equal (HostReductions.AllFinite(torch.ones([| 4L |], dtype = ScalarType.Float16))) (Nullable()) "float16: libtorch decides"
        }
    ]
