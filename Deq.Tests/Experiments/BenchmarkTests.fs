module Deq.Tests.Experiments.BenchmarkTests

open System
open Expecto
open TorchSharp
open Deq.Experiments.Benchmarks

let tiny = MemoryProbeConfig(Width = 8, SeqLen = 6, Batch = 2, Iterations = 3)

[<Tests>]
let tests =
    testList "benchmarks" [
        test "probe configs validate and label themselves" {
            Expect.equal tiny.EffectiveBackwardIterations 3 "backward defaults to forward"
            Expect.stringContains (MemoryProbeConfig(Width = 8, SeqLen = 6, Batch = 2, Iterations = 3, Mode = ProbeMode.Unrolled).Label) "unrolled L=3" "unrolled label"
            Expect.throwsT<ArgumentOutOfRangeException> (fun () -> MemoryProbeConfig(Width = 0).Validate() |> ignore) "zero width"
            Expect.throwsT<ArgumentException> (fun () -> MemoryProbeConfig(Device = "tpu").Validate() |> ignore) "unknown device"
        }

        test "probe arguments round-trip through the CLI's option names" {
            let args = TrainingMemory.ProbeArguments(MemoryProbeConfig(Width = 8, SeqLen = 6, Batch = 2, Iterations = 3, Family = CoreFamily.Transformer))
            Expect.sequenceEqual args.[0..2] [| "bench"; "memory-probe"; "--json" |] "subcommand"
            let value name = args.[Array.IndexOf(args, name) + 1]
            Expect.equal (value "--family") "transformer" "family"
            Expect.equal (value "--width") "8" "width"
        }

        test "a measurement survives JSON" {
            let m = MemoryMeasurement(tiny, 1000L, 2000L, 3000L, 100L, 42L, 0.5, 3, 2, 1e-3, "method")
            let back = TrainingMemory.FromJson(TrainingMemory.ToJson m)
            Expect.equal back.Config tiny "config"
            Expect.equal back.PeakBytes 1000L "peak"
            Expect.floatClose Accuracy.high back.PeakInStates 10.0 "copies of z"
        }

        test "one DEQ and one unrolled step run on both cores and take the requested steps" {
            for family in [ CoreFamily.TrellisNet; CoreFamily.Transformer ] do
                use core = BenchCore.Create(family, 8, 6, 2, torch.CPU)
                use scope = torch.NewDisposeScope()
                let bound = core.Bind()
                let mutable backwardSteps = -1
                let o = TrainingMemory.DeqOptions tiny
                let options = Deq.Implicit.EquilibriumOptions(o.Forward, o.Adjoint, (fun r -> backwardSteps <- r.Result.Steps))
                let eq = Deq.Implicit.Equilibrium.Solve(bound.F, bound.Z0, options)
                Deq.Implicit.Equilibrium.Backward(eq.Z.square().mean())
                Expect.equal eq.Forward.Steps 3 $"{family}: all forward steps taken"
                // The lean adjoint is plain iteration, then Anderson from its best iterate: both run all 3 steps.
                Expect.equal backwardSteps 6 $"{family}: all backward steps of both stages taken"
                Expect.isGreaterThan core.StateBytes 0L "state size"
        }

        test "the fresh-process probe reports a positive peak (skipped when deq is not built)" {
            match (try Some(DeqExecutable.Locate()) with :? InvalidOperationException -> None) with
            | None -> skiptest "Deq.Cli is not built"
            | Some _ ->
                let m = TrainingMemory.MeasureInFreshProcess(MemoryProbeConfig(Width = 8, SeqLen = 30, Batch = 4, Iterations = 3), TimeSpan.FromMinutes 2.0)
                Expect.isGreaterThan m.PeakBytes 0L "peak above baseline"
                Expect.equal m.ForwardSteps 3 "steps"
                Expect.stringContains m.Method "clear_refs" "method stated"
        }

        test "TimedF counts calls and time" {
            let timed = TimedF(Func<torch.Tensor, torch.Tensor>(fun z -> z * 0.5))
            use z = torch.ones(3L)
            use r = timed.F.Invoke z
            Expect.equal timed.Calls 1 "one call"
            Expect.isGreaterThanOrEqual timed.Elapsed TimeSpan.Zero "time"
        }
    ]
