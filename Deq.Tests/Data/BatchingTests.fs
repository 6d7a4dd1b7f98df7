module Deq.Tests.Data.BatchingTests

open System
open Expecto
open TorchSharp
open Deq.Data
open Deq.Tests.Support.Files

let private values (t: torch.Tensor) = t.contiguous().data<int64>().ToArray()

[<Tests>]
let tests =
    testList "batching" [
        test "batchify is time-major: column j holds the j-th consecutive slice, the remainder dropped" {
            use tokens = torch.arange(23L, dtype = torch.ScalarType.Int64)
            use b = Batching.Batchify(tokens, 4)
            Expect.equal b.shape [| 5L; 4L |] "[23/4, 4]"
            Expect.equal (values (b.select(1, 2L))) [| 10L .. 14L |] "column 2"
            Expect.equal (values (b.select(0, 0L))) [| 0L; 5L; 10L; 15L |] "row 0"
        }

        test "segments are consecutive, targets are inputs shifted by one, the last one shorter" {
            use tokens = torch.arange(41L, dtype = torch.ScalarType.Int64)
            use b = Batching.Batchify(tokens, 2)                // [20, 2]
            Expect.equal (Batching.SegmentCount(b, 6)) 4 "ceil(19 / 6)"
            let segs = Batching.Segments(b, 6) |> List.ofSeq
            Expect.equal (segs |> List.map (fun struct (i, _) -> i.shape.[0])) [ 6L; 6L; 6L; 1L ] "lengths"
            let inputs = torch.cat(segs |> List.map (fun struct (i, _) -> i) |> Array.ofList, 0L)
            let targets = torch.cat(segs |> List.map (fun struct (_, t) -> t) |> Array.ofList, 0L)
            Expect.equal (values (inputs.select(1, 1L))) [| 20L .. 38L |] "column 1 inputs cover rows 0..18 in order"
            Expect.equal (values (targets.select(1, 1L))) [| 21L .. 39L |] "targets shifted by one"
        }

        test "bad sizes name the problem" {
            use tokens = torch.arange(5L, dtype = torch.ScalarType.Int64)
            throwsWith<ArgumentException> [ "too few" ] (fun () -> Batching.Batchify(tokens, 3) |> ignore) |> ignore
            throwsWith<ArgumentOutOfRangeException> [ "batch" ] (fun () -> Batching.Batchify(tokens, 0) |> ignore) |> ignore
            throwsWith<ArgumentOutOfRangeException> [ "Length" ] (fun () -> SegmentOptions(Length = 0).Validate() |> ignore) |> ignore
        }
    ]
