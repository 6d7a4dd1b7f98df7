module Deq.Tests.Experiments.BenchmarkTests

open System
open Expecto
open TorchSharp
open Deq.Experiments.Benchmarks
open Deq.FSharp

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

        test "the floor averages the slots a sweep reads over a solve's Broyden steps, counts its new slot, and converts MB at GB/s to ms" {
            // 5 recorded steps: Broyden steps whose sweeps read 1, 2, 3 and 0 slots (the last forms no next step), 1.5 on
            // average, of 2 rows x 1024 floats.
            let b = FactorBandwidth.Measure(2, 1024, 5, repeats = 1)
            Expect.floatClose Accuracy.veryHigh b.FactorMBPerStep (1.5 * 2.0 * 1024.0 * 4.0 / 1e6) "MB a sweep reads a step"
            Expect.isTrue (b.ColdGBps > 0.0 && b.WarmGBps > 0.0 && Double.IsFinite b.ColdGBps && Double.IsFinite b.WarmGBps) $"rates measured: {b}"
            let struct (fromCache, fromMemory) = b.Milliseconds 1
            Expect.floatClose Accuracy.veryHigh fromMemory (b.FactorMBPerStep / b.ColdGBps) "one sweep from memory"
            Expect.floatClose Accuracy.veryHigh fromCache (b.FactorMBPerStep / b.WarmGBps) "one sweep from cache"
            Expect.floatClose Accuracy.veryHigh b.NewSlotsMBPerStep (2.0 * 1024.0 * 4.0 / 1e6) "a row per element a step"
            Expect.isTrue (b.FreshGBps > 0.0 && Double.IsFinite b.FreshGBps) $"fresh pages timed: {b}"
            Expect.floatClose Accuracy.veryHigh b.NewSlotsMilliseconds (b.NewSlotsMBPerStep / b.FreshGBps) "their ms"
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
                // The lean pair is plain iteration, then Anderson from its best iterate, both ways: each stage runs all 3 steps.
                Expect.equal eq.Forward.Steps 6 $"{family}: all forward steps of both stages taken"
                Expect.equal backwardSteps 6 $"{family}: all backward steps of both stages taken"
                Expect.isGreaterThan core.StateBytes 0L "state size"
        }

        test "the fresh-process probe reports a positive peak (skipped when deq is not built)" {
            match (try Some(DeqExecutable.Locate()) with :? InvalidOperationException -> None) with
            | None -> skiptest "Deq.Cli is not built"
            | Some _ ->
                let m = TrainingMemory.MeasureInFreshProcess(MemoryProbeConfig(Width = 8, SeqLen = 30, Batch = 4, Iterations = 3), TimeSpan.FromMinutes 2.0)
                Expect.isGreaterThan m.PeakBytes 0L "peak above baseline"
                Expect.equal m.ForwardSteps 6 "steps: 3 of plain iteration, 3 of its Anderson fallback"
                Expect.stringContains m.Method "clear_refs" "method stated"
        }

        test "TimedF counts calls and time" {
            let timed = TimedF(fun z -> z * 0.5)
            use z = torch.ones(3L)
            use r = timed.Apply z
            Expect.equal timed.Calls 1 "one call"
            Expect.isGreaterThanOrEqual timed.Elapsed TimeSpan.Zero "time"
        }
    ]

// A contraction f(z) = tanh(0.3 (W z + b)), W and b in a Linear module, float64, for the ledger's bookkeeping.
let tinyCell () =
    torch.manual_seed 1L |> ignore
    let cell = torch.nn.Linear(4L, 4L, dtype = torch.ScalarType.Float64)
    cell, fun (z: torch.Tensor) -> torch.tanh(cell.forward(z) * 0.3)

[<Tests>]
let ledgerTests =
    testList "memory ledger" [
        test "the peak is the static part plus the larger of the forward solve and graph + backward" {
            let l = Deq.Training.MemoryLedger(100L, 10L, 10L, 20L, 500L, 300L, 400L, "m")
            Expect.equal l.StaticBytes 40L "parameters + gradients + optimizer"
            Expect.equal l.StepPeakBytes 700L "graph + backward beats the forward solve"
            Expect.equal l.PeakBytes 740L "peak"
            Expect.floatClose Accuracy.high (l.Copies 740L) 7.4 "copies of z"
            let forwardBound = Deq.Training.MemoryLedger(100L, 0L, 0L, 0L, 900L, 300L, 400L, "m")
            Expect.equal forwardBound.StepPeakBytes 900L "the forward solve beats graph + backward"
            Expect.sequenceEqual (l.Phases |> Seq.map (fun p -> p.Value)) [ 10L; 10L; 20L; 500L; 300L; 400L ] "phases in order"
            Expect.stringContains (string l) "step peak" "printable"
            Expect.isTrue (Double.IsNaN(Deq.Training.MemoryLedger(0L, 0L, 0L, 0L, 0L, 0L, 0L, "m").Copies 5L)) "no z: NaN copies"
        }

        test "Measure sizes parameters, gradients and optimizer state from the module and runs a real step" {
            let cell, f = tinyCell ()
            use _ = cell
            use z0 = torch.zeros(3L, 4L, dtype = torch.ScalarType.Float64)
            let loss (z: torch.Tensor) = z.sum()
            let withModule = { MemoryLedger.defaults with Module = Some cell }
            let l = MemoryLedger.measure withModule f z0 loss
            Expect.equal l.ParameterBytes ((16L + 4L) * 8L) "weight and bias, float64"
            Expect.equal l.GradientBytes l.ParameterBytes "every parameter requires grad"
            Expect.equal l.OptimizerStateBytes (2L * l.GradientBytes) "Adam: two slots"
            Expect.equal l.StateBytes (12L * 8L) "one z"
            Expect.isTrue (l.ForwardSolveBytes >= 0L && l.GraphBytes >= 0L && l.BackwardBytes >= 0L) "phases are non-negative"
            Expect.stringContains l.Method "clear_refs" "method stated"
            for p in cell.parameters() do
                match Option.ofObj p.grad with
                | None -> failtest "a parameter has no gradient"
                | Some g -> use g = g in Expect.isGreaterThan (g.abs().sum().ToDouble()) 0.0 "backward reached every parameter"
            let plain = MemoryLedger.measure { withModule with OptimizerSlots = 0 } f z0 loss
            Expect.equal plain.OptimizerStateBytes 0L "plain SGD keeps no state"
            Expect.throwsT<ArgumentOutOfRangeException> (fun () -> MemoryLedger.measure { withModule with OptimizerSlots = -1 } f z0 loss |> ignore) "negative slots"
        }

        test "without a module the static rows are zero; the unrolled stack runs no forward solver" {
            let cell, f = tinyCell ()
            use _ = cell
            use z0 = torch.zeros(3L, 4L, dtype = torch.ScalarType.Float64)
            let unrolled = { MemoryLedger.defaults with Equilibrium = { Equilibrium.defaults with Adjoint = Deq.Implicit.Adjoint.Unrolled 3 } }
            let l = MemoryLedger.measure unrolled f z0 (fun z -> z.sum())
            Expect.equal l.StaticBytes 0L "no module, no static rows"
            Expect.equal l.ForwardSolveBytes 0L "no solver ran"
        }

        test "a ledger survives JSON" {
            let l = Deq.Training.MemoryLedger(100L, 1L, 2L, 3L, 4L, 5L, 6L, "m")
            Expect.equal (TrainingMemory.LedgerFromJson(TrainingMemory.ToJson l)) l "round trip"
        }

        test "the fresh-process ledger has a forward solve for the DEQ and none for the stack (skipped when deq is not built)" {
            match (try Some(DeqExecutable.Locate()) with :? InvalidOperationException -> None) with
            | None -> skiptest "Deq.Cli is not built"
            | Some _ ->
                let config = MemoryProbeConfig(Width = 8, SeqLen = 30, Batch = 4, Iterations = 3)
                let deq = TrainingMemory.LedgerInFreshProcess(config, TimeSpan.FromMinutes 2.0)
                let stack = TrainingMemory.LedgerInFreshProcess(MemoryProbeConfig(Width = 8, SeqLen = 30, Batch = 4, Iterations = 3, Mode = ProbeMode.Unrolled), TimeSpan.FromMinutes 2.0)
                Expect.isGreaterThan deq.ParameterBytes 0L "the core's parameters"
                Expect.equal stack.ForwardSolveBytes 0L "the stack runs no solver"
                Expect.equal deq.StateBytes (4L * 30L * 16L * 4L) "z: batch x seq x 2 h (h = 8) x float32"
        }
    ]
