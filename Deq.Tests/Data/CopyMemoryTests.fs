module Deq.Tests.Data.CopyMemoryTests

open System
open Expecto
open TorchSharp
open Deq.Data
open Deq.Tests.Support.Files

let private small = CopyMemoryOptions(T = 30, TrainSize = 64, TestSize = 16, Seed = 7L)

[<Tests>]
let tests =
    testList "copy memory" [
        test "shapes, digits 1..8 first, one delimiter 9 at index T+9, targets the digits in the last ten" {
            use d = CopyMemory.Generate(small)
            let t = 30L
            for x, y, n in [ d.TrainX, d.TrainY, 64L; d.TestX, d.TestY, 16L ] do
                Expect.equal x.shape [| n; t + 20L |] "x shape"
                Expect.equal y.shape [| n; t + 20L |] "y shape"
                let digits = x.narrow(1, 0L, 10L)
                Expect.isTrue ((digits.ge(torch.tensor 1L)).all().ToBoolean() && (digits.le(torch.tensor 8L)).all().ToBoolean()) "digits in 1..8"
                Expect.isTrue (x.select(1, t + 9L).eq(torch.tensor 9L).all().ToBoolean()) "delimiter at T+9"
                Expect.equal (x.eq(torch.tensor 9L).sum().ToInt64()) n "exactly one 9 per row"
                Expect.equal (x.narrow(1, 10L, t - 1L).abs().sum().ToInt64()) 0L "zeros between"
                Expect.equal (x.narrow(1, t + 10L, 10L).abs().sum().ToInt64()) 0L "zeros after the delimiter"
                Expect.isTrue (sameTensor (y.narrow(1, t + 10L, 10L)) digits) "last ten targets = first ten digits"
                Expect.equal (y.narrow(1, 0L, t + 10L).abs().sum().ToInt64()) 0L "targets zero elsewhere"
            // All eight digits occur (uniform draw over 1..8).
            for k in 1L .. 8L do
                Expect.isTrue (d.TrainX.narrow(1, 0L, 10L).eq(torch.tensor k).any().ToBoolean()) $"digit {k} drawn"
        }

        test "the same seed gives the same data; another seed other data; train and test differ" {
            use a = CopyMemory.Generate(small)
            use b = CopyMemory.Generate(small)
            use c = CopyMemory.Generate(CopyMemoryOptions(T = 30, TrainSize = 64, TestSize = 16, Seed = 8L))
            Expect.isTrue (sameTensor a.TrainX b.TrainX && sameTensor a.TestY b.TestY) "same seed"
            Expect.isFalse (sameTensor a.TrainX c.TrainX) "other seed"
            Expect.isFalse (sameTensor (a.TrainX.narrow(0, 0L, 16L)) a.TestX) "test is not a copy of train"
        }

        test "MarkerFillsTail puts 9 on the last eleven inputs; defaults are T=400, 20000/2000" {
            use d = CopyMemory.Generate(CopyMemoryOptions(T = 30, TrainSize = 64, TestSize = 16, Seed = 7L, MarkerFillsTail = true))
            Expect.isTrue (d.TrainX.narrow(1, 39L, 11L).eq(torch.tensor 9L).all().ToBoolean()) "tail of 9s"
            let o = CopyMemoryOptions()
            Expect.equal (o.T, o.TrainSize, o.TestSize) (400, 20_000, 2_000) "defaults"
            throwsWith<ArgumentOutOfRangeException> [ "CopyMemoryOptions.T" ] (fun () -> CopyMemory.Generate(CopyMemoryOptions(T = 0)) |> ignore) |> ignore
        }
    ]
