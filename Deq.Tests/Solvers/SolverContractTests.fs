module Deq.Tests.Solvers.SolverContractTests

open System
open Expecto
open TorchSharp

open Deq.Solvers
open Deq.FSharp
open Deq.Tests.Support
open Deq.Tests.Support.Generators

let private problem () =
    let p = { TanhProblem.Seed = 7; N = 6; Batch = 3; Rho = 0.8 }
    let _, f = p.Build()
    f, TestDevice.zerosOn (TestDevice.device ()) [ 3; 6 ]

let private all : (string * Solver) list =
    [ "forward", ForwardIteration.Create()
      "anderson", Anderson.Create()
      "broyden", Broyden.Create()
      "broyden line-search", Broyden.Create(broyden = BroydenOptions(LineSearch = true)) ]

let private throwsWith<'e when 'e :> exn> (words: string list) (action: unit -> unit) =
    try
        action ()
        failtest $"expected {typeof<'e>.Name}"
    with
    | :? 'e as e ->
        for w in words do Expect.stringContains e.Message w "the message names the problem"

[<Tests>]
let contracts =
    testList "solver contracts" [
        test "results are bit-for-bit deterministic" {
            use scope = torch.NewDisposeScope()
            let f, z0 = problem ()
            for name, solve in all do
                let a = Solver.run solve f z0
                let b = Solver.run solve f z0
                Expect.isTrue (maxAbsDiff a.Value b.Value = 0.0) $"{name} value"
                Expect.equal a.Evaluations b.Evaluations $"{name} evaluations"
                Expect.sequenceEqual a.RelTrace b.RelTrace $"{name} trace"
        }

        test "result carries per-element residuals, traces and counts" {
            use scope = torch.NewDisposeScope()
            let f, z0 = problem ()
            let r = Solver.run (Broyden.Create(SolverOptions(Tol = 1e-9))) f z0
            Expect.equal r.AbsResidual.Length 3 "one residual per batch element"
            Expect.equal r.ConvergedPerElement [| true; true; true |] "each converged"
            Expect.equal r.RelTrace.Count r.Steps "one trace entry per step"
            Expect.isGreaterThanOrEqual r.Evaluations r.Steps "evaluations >= steps"
            Expect.isLessThanOrEqual r.RelLowest 1e-9 "lowest residual within tol"
            Expect.isFalse r.Value.requires_grad "value is detached"
        }

        test "NaN from f stops with NonFinite and a finite best iterate" {
            use scope = torch.NewDisposeScope()
            let f, z0 = problem ()
            let mutable calls = 0
            let poisoned (z: Tensor) =
                calls <- calls + 1
                let y = f z
                if calls >= 4 then y * Double.NaN else y
            for name, solve in all do
                calls <- 0
                let r = Solver.run solve poisoned z0
                Expect.equal r.Status SolverStatus.NonFinite $"{name}: {r}"
                Expect.isFalse r.Converged name
                Expect.isTrue (torch.isfinite(r.Value).all().item<bool>()) $"{name} value finite"
                Expect.stringContains r.Reason "NaN" name
        }

        test "Inf from f on the first call still returns a finite value" {
            use scope = torch.NewDisposeScope()
            let _, z0 = problem ()
            let r = Solver.run (ForwardIteration.Create()) (fun z -> z + Double.PositiveInfinity) z0
            Expect.equal r.Status SolverStatus.NonFinite "status"
            Expect.isTrue (maxAbsDiff r.Value z0 = 0.0) "falls back to z0"
        }

        test "f that changes the shape is a clear error" {
            use scope = torch.NewDisposeScope()
            let _, z0 = problem ()
            for _, solve in all do
                throwsWith<InvalidOperationException> [ "shape"; "[3, 6]"; "[3, 5]" ] (fun () ->
                    Solver.run solve (fun z -> z.narrow(1, 0, 5)) z0 |> ignore)
        }

        test "f that changes the dtype is a clear error" {
            use scope = torch.NewDisposeScope()
            let _, z0 = problem ()
            for _, solve in all do
                throwsWith<InvalidOperationException> [ "dtype"; "Float32" ] (fun () ->
                    Solver.run solve (fun z -> z.to_type(ScalarType.Float32)) z0 |> ignore)
        }

        test "f that moves to another device is a clear error" {
            use scope = torch.NewDisposeScope()
            let _, z0 = problem ()
            throwsWith<InvalidOperationException> [ "meta"; "device" ] (fun () ->
                Solver.run (Broyden.Create()) (fun z -> z.``to``(torch.device("meta"))) z0 |> ignore)
        }

        test "bad options and inputs are rejected by name" {
            throwsWith<ArgumentOutOfRangeException> [ "Tol" ] (fun () -> Broyden.Create(SolverOptions(Tol = 0.0)) |> ignore)
            throwsWith<ArgumentOutOfRangeException> [ "Tol" ] (fun () -> Anderson.Create(SolverOptions(Tol = -1e-3)) |> ignore)
            throwsWith<ArgumentOutOfRangeException> [ "MaxIter" ] (fun () -> ForwardIteration.Create(SolverOptions(MaxIter = 0)) |> ignore)
            throwsWith<ArgumentOutOfRangeException> [ "damping" ] (fun () -> ForwardIteration.Create(damping = 1.5) |> ignore)
            throwsWith<ArgumentOutOfRangeException> [ "Memory" ] (fun () -> Anderson.Create(anderson = AndersonOptions(Memory = 0)) |> ignore)
            throwsWith<ArgumentOutOfRangeException> [ "Memory" ] (fun () -> Broyden.Create(broyden = BroydenOptions(Memory = 0)) |> ignore)
            use scope = torch.NewDisposeScope()
            let f, _ = problem ()
            throwsWith<ArgumentException> [ "floating-point" ] (fun () ->
                Solver.run (Broyden.Create()) f (TestDevice.onDevice (torch.zeros([| 3L; 6L |], dtype = ScalarType.Int64))) |> ignore)
            throwsWith<ArgumentException> [ "NaN" ] (fun () ->
                Solver.run (Broyden.Create()) f (TestDevice.zerosOn (TestDevice.device ()) [ 3; 6 ] + Double.NaN) |> ignore)
        }

        test "a broadcast z0 is checked through its one stored value per broadcast dimension" {
            use scope = torch.NewDisposeScope()
            let f, _ = problem ()
            let nanOnce = (torch.zeros([| 1L; 1L |], dtype = ScalarType.Float64) + Double.NaN).expand([| 3L; 6L |])
            throwsWith<ArgumentException> [ "NaN" ] (fun () -> Solver.run (Broyden.Create()) f nanOnce |> ignore)
            // Broadcast over the batch only: the NaN sits in the one stored row, at its last entry.
            let row = torch.zeros([| 1L; 6L |], dtype = ScalarType.Float64)
            row.[0L, 5L] <- torch.tensor(Double.PositiveInfinity, dtype = ScalarType.Float64)
            throwsWith<ArgumentException> [ "NaN or Inf" ] (fun () -> Solver.run (Broyden.Create()) f (row.expand([| 3L; 6L |])) |> ignore)
            let r = Solver.run (Broyden.Create(SolverOptions(Tol = 1e-8))) f (InitialGuess.Zeros([| 3L; 6L |], ScalarType.Float64, torch.CPU))
            Expect.isTrue r.Converged $"a finite broadcast z0 solves: {r}"
        }

        test "a diverging map stops with Diverged, not a silent answer" {
            use scope = torch.NewDisposeScope()
            let z0 = torch.ones([| 2L; 4L |], dtype = ScalarType.Float64)
            let r = Solver.run (ForwardIteration.Create(SolverOptions(MaxIter = 500))) (fun z -> z * 3.0) z0
            Expect.equal r.Status SolverStatus.Diverged $"{r}"
            Expect.isFalse r.Converged "not converged"
        }

        test "MaxIterations is reported with the residual left" {
            use scope = torch.NewDisposeScope()
            let f, z0 = problem ()
            let r = Solver.run (ForwardIteration.Create(SolverOptions(MaxIter = 3, Tol = 1e-12))) f z0
            Expect.equal r.Status SolverStatus.MaxIterations "status"
            Expect.equal r.Steps 3 "steps"
            Expect.stringContains r.Reason "MaxIter = 3" "reason"
        }
    ]

[<Tests>]
let combinators =
    testList "solver combinators" [
        test "OrElse falls back from the first solver's best iterate and adds up the work" {
            use scope = torch.NewDisposeScope()
            let f, z0 = problem ()
            let weak = ForwardIteration.Create(SolverOptions(MaxIter = 3, Tol = 1e-10))
            let r = Solver.run (weak |> Solver.orElse (Broyden.Create(SolverOptions(Tol = 1e-10)))) f z0
            Expect.isTrue r.Converged $"{r}"
            Expect.equal r.Solver "forward>broyden" "name"
            Expect.isGreaterThan r.Evaluations 3 "includes both solvers' evaluations"
            Expect.equal r.RelTrace.Count r.Steps "traces concatenated"
            let strong = ForwardIteration.Create(SolverOptions(MaxIter = 500, Tol = 1e-10)) |> Solver.orElse (Broyden.Create())
            Expect.equal ((Solver.run strong f z0).Solver) "forward" "no fallback when the first converges"
        }

        test "WithBudget caps evaluations across a fallback chain" {
            use scope = torch.NewDisposeScope()
            let f, z0 = problem ()
            let chain = ForwardIteration.Create(SolverOptions(MaxIter = 5, Tol = 1e-14)) |> Solver.orElse (Anderson.Create(SolverOptions(MaxIter = 100, Tol = 1e-14)))
            let r = Solver.run (chain |> Solver.withBudget 12) f z0
            Expect.equal r.Status SolverStatus.BudgetExhausted $"{r}"
            Expect.isLessThanOrEqual r.Evaluations 12 "never more than the budget"
            Expect.isTrue (torch.isfinite(r.Value).all().item<bool>()) "returns the best iterate"
        }

        test "Observed sees every evaluation with per-element residuals" {
            use scope = torch.NewDisposeScope()
            let f, z0 = problem ()
            let seen = Collections.Generic.List<SolverStep>()
            let r = Solver.run (Anderson.Create() |> Solver.observed seen.Add) f z0
            Expect.equal seen.Count r.Evaluations "one observation per f call"
            Expect.equal seen[0].AbsResidual.Length 3 "per batch element"
            Expect.isLessThan (Array.max seen[seen.Count - 1].RelResidual) (Array.max seen[0].RelResidual) "residual fell"
        }

        test "Damped turns an oscillating map into a converging one" {
            use scope = torch.NewDisposeScope()
            let b = torch.ones([| 2L; 3L |], dtype = ScalarType.Float64)
            let f (z: Tensor) = -0.999 * z + b
            let o = SolverOptions(MaxIter = 200, Tol = 1e-10, Stop = StopMode.Absolute)
            let plain = Solver.run (ForwardIteration.Create(o)) f (torch.zeros_like(b))
            let damped = Solver.run (ForwardIteration.Create(o) |> Solver.damped 0.5) f (torch.zeros_like(b))
            Expect.isFalse plain.Converged "plain iteration oscillates"
            Expect.isTrue damped.Converged $"{damped}"
            Expect.isLessThan (maxAbsDiff damped.Value (b / 1.999)) 1e-9 "damped reaches z* = b / 1.999"
        }
    ]

[<Tests>]
let memory =
    test "solvers hold O(1) live tensors in the iteration count and leak none, with either ledger back end" {
        let f, z0 = problem ()
        let options iters = SolverOptions(MaxIter = iters, Tol = 1e-300, DivergenceFactor = 1e300)
        let check backEnd solverName (make: SolverOptions -> Solver) =
            let name = $"{solverName} ({backEnd} ledger)"
            let measure iters =
                // Earlier tests' garbage tensors must not be finalized (and uncounted) mid-measurement.
                GC.Collect()
                GC.WaitForPendingFinalizers()
                let before = Tensor.TotalCount
                let mutable peak = 0L
                let mutable calls = 0
                // A target that keeps moving a little, so no solver can stop before MaxIter.
                let counting (z: Tensor) =
                    peak <- max peak (Tensor.TotalCount - before)
                    calls <- calls + 1
                    f z + 1e-3 * sin (float calls)
                let r = Solver.run (make (options iters)) counting z0
                Expect.equal r.Steps iters $"{name} ran all {iters} steps"
                let held = Tensor.TotalCount - before
                r.Value.Dispose()
                peak, held, Tensor.TotalCount - before
            // 40: past every history's capacity (Broyden's memory 30 is also capped at MaxIter - 1 slots).
            let peak40, held40, left40 = measure 40
            let peak200, held200, left200 = measure 200
            Expect.equal peak200 peak40 $"{name}: live tensors at 200 iterations = at 40"
            Expect.equal (held40, held200) (1L, 1L) $"{name}: only the value survives the solve"
            Expect.equal (left40, left200) (0L, 0L) $"{name}: nothing leaks once the value is disposed"
        for backEnd in [ "host"; "device" ] do
            SolveLedger.ForceDevice <- Nullable((backEnd = "device"))
            try
                check backEnd "forward" (fun o -> ForwardIteration.Create(o))
                check backEnd "anderson" (fun o -> Anderson.Create(o))
                check backEnd "broyden" (fun o -> Broyden.Create(o))
            finally SolveLedger.ForceDevice <- Nullable()
    }
