/// The stop rule cannot call a run-away iterate converged, and failure stops only the elements that fail.
module Deq.Tests.Solvers.StopRuleTests

open System
open Expecto
open TorchSharp

open Deq.Solvers
open Deq.FSharp
open Deq.Tests.Support.Generators

let private solvers (o: SolverOptions) : (string * Solver) list =
    [ "forward", ForwardIteration.Create(o)
      "anderson", Anderson.Create(o)
      "broyden", Broyden.Create(o)
      "broyden line-search", Broyden.Create(o, BroydenOptions(LineSearch = true)) ]

/// Maps with no fixed point in reach: the residual stays near 1 (or 0.5) while z runs off to infinity.
let private runaways : (string * (Tensor -> Tensor)) list =
    [ "z + 1 + 0.1 sin z", fun z -> z + 1.0 + 0.1 * torch.sin(z)
      "z + 1", fun z -> z + 1.0
      "z + 0.5 + exp(-z)", fun z -> z + 0.5 + torch.exp(-z) ]

let private zeros (b: int64) (n: int64) = torch.zeros([| b; n |], dtype = ScalarType.Float64)

[<Tests>]
let stopRule =
    testList "stop rule" [
        test "no solver calls a run-away iterate converged, with either stop mode" {
            use scope = torch.NewDisposeScope()
            for mapName, f in runaways do
                for stop in [ StopMode.Relative; StopMode.Absolute ] do
                    for name, solve in solvers (SolverOptions(Stop = stop)) do
                        let r = Solver.run solve f (zeros 2L 4L)
                        let what = $"{name} on {mapName} ({stop}): {r}"
                        Expect.notEqual r.Status SolverStatus.Converged what
                        Expect.isFalse (Array.exists id r.ConvergedPerElement) what
                        Expect.isTrue (torch.isfinite(r.Value).all().item<bool>()) what
        }

        test "Broyden and Anderson on z + 1 + 0.1 sin z stop with Diverged, naming the run-away" {
            use scope = torch.NewDisposeScope()
            let f (z: Tensor) = z + 1.0 + 0.1 * torch.sin(z)
            for stop in [ StopMode.Relative; StopMode.Absolute ] do
                for name, solve in [ "anderson", Anderson.Create(SolverOptions(Stop = stop)); "broyden", Broyden.Create(SolverOptions(Stop = stop)) ] do
                    let r = Solver.run solve f (zeros 2L 4L)
                    Expect.equal r.Status SolverStatus.Diverged $"{name} ({stop}): {r}"
                    Expect.stringContains r.Reason "ran away" name
                    Expect.stringContains r.Reason "MaxGrowth" name
                    Expect.equal r.StatusPerElement [| SolverStatus.Diverged; SolverStatus.Diverged |] name
        }

        test "a genuine fixed point of an expanding map (2z + 1, z* = -1) still converges" {
            use scope = torch.NewDisposeScope()
            let f (z: Tensor) = 2.0 * z + 1.0
            for name, solve in [ "anderson", Anderson.Create(); "broyden", Broyden.Create() ] do
                let r = Solver.run solve f (zeros 2L 4L)
                Expect.isTrue r.Converged $"{name}: {r}"
                Expect.isLessThan (maxAbsDiff r.Value (zeros 2L 4L - 1.0)) 1e-5 name
        }

        test "a fixed point 1000 x farther than f(z0) is not mistaken for a run-away" {
            use scope = torch.NewDisposeScope()
            use g = generator 3
            let b = torch.randn([| 2L; 5L |], dtype = ScalarType.Float64, generator = g)
            // z* = 1000 b: the relative residual's denominator is capped at 1000 x the start, not below it.
            let r = Solver.run (Broyden.Create(SolverOptions(Tol = 1e-6))) (fun z -> 0.999 * z + b) (zeros 2L 5L)
            Expect.isTrue r.Converged $"{r}"
            Expect.isLessThan (maxAbsDiff r.Value (1000.0 * b)) 1e-6 "reaches z* = 1000 b"
        }
    ]

[<Tests>]
let masking =
    testList "failure is masked per element" [
        test "NaN in one element stops that element; the others converge exactly as they would alone" {
            use scope = torch.NewDisposeScope()
            let mutable calls = 0
            let clean, poisoned = withElementOne (fun z -> calls <- calls + 1; if calls >= 3 then z * Double.NaN else 0.5 * torch.tanh(z) + 1.0)
            let o = SolverOptions(Tol = 1e-10, MaxIter = 200)
            for name, solve in solvers o do
                calls <- 0
                let r = Solver.run solve poisoned (zeros 3L 6L)
                let alone = Solver.run solve clean (zeros 3L 6L)
                Expect.equal r.Status SolverStatus.NonFinite $"{name}: {r}"
                Expect.equal r.StatusPerElement [| SolverStatus.Converged; SolverStatus.NonFinite; SolverStatus.Converged |] $"{name}: {r}"
                Expect.equal r.ConvergedPerElement [| true; false; true |] name
                Expect.stringContains r.Reason "[1]" name
                Expect.isTrue (torch.isfinite(r.Value).all().item<bool>()) $"{name}: the failed element keeps a finite best iterate"
                for i in [ 0L; 2L ] do
                    Expect.isLessThan (maxAbsDiff (r.Value.[i]) (alone.Value.[i])) 1e-12 $"{name}: element {i} unaffected"
        }

        test "a diverging element stops with Diverged while the others converge" {
            use scope = torch.NewDisposeScope()
            let _, f = withElementOne (fun z -> 3.0 * z + 1.0)
            for name, solve in [ "forward", ForwardIteration.Create(SolverOptions(Tol = 1e-8, MaxIter = 300)) ] do
                let r = Solver.run solve f (zeros 3L 6L)
                Expect.equal r.StatusPerElement [| SolverStatus.Converged; SolverStatus.Diverged; SolverStatus.Converged |] $"{name}: {r}"
                Expect.equal r.Status SolverStatus.Diverged name
                Expect.isLessThan r.StepsPerElement[1] r.Steps "the diverged element stopped early"
        }
    ]

[<Tests>]
let statistics =
    testList "per-element statistics" [
        test "steps, best steps and traces are per element" {
            use scope = torch.NewDisposeScope()
            // Element 0 contracts by 0.1 per step, element 1 by 0.9: plain iteration needs far more steps for 1.
            let rate = torch.tensor([| 0.1; 0.9 |], dtype = ScalarType.Float64).reshape(2L, 1L)
            let f (z: Tensor) = rate * z + 1.0
            let tol = 1e-8
            let r = Solver.run (ForwardIteration.Create(SolverOptions(Tol = tol, Stop = StopMode.Absolute, MaxIter = 500))) f (zeros 2L 3L)
            Expect.isTrue r.Converged $"{r}"
            Expect.isLessThan r.StepsPerElement[0] r.StepsPerElement[1] "the fast element converged first"
            Expect.equal r.StepsPerElement[1] r.Steps "the slow one took every step"
            Expect.equal (r.AbsTracePerElement.GetLength 0, r.AbsTracePerElement.GetLength 1) (2, r.Steps) "[batch, steps]"
            for i in 0 .. 1 do
                let s = r.StepsPerElement[i]
                Expect.isLessThanOrEqual r.AbsTracePerElement[i, s - 1] tol $"element {i} met tol at its step"
                Expect.isGreaterThan r.AbsTracePerElement[i, s - 2] tol $"element {i} not a step earlier"
                Expect.equal r.AbsResidual[i] r.AbsTracePerElement[i, r.BestStepPerElement[i] - 1] $"element {i}: residual of the best step"
            Expect.equal r.AbsTrace[0] (max r.AbsTracePerElement[0, 0] r.AbsTracePerElement[1, 0]) "the batch trace is the worst element"
        }

        test "the observer sees the step number, z, f(z) and residuals in the chosen norm" {
            use scope = torch.NewDisposeScope()
            let _, f = { TanhProblem.Seed = 7; N = 6; Batch = 3; Rho = 0.8 }.Build()
            let seen = Collections.Generic.List<int * float[] * float[]>()
            let o = SolverOptions(Norm = ResidualNorm.Max, Tol = 1e-8)
            let observe (s: SolverStep) =
                let expected = (s.Fz - s.Z).abs().amax([| 1L |]).data<float>().ToArray()
                Expect.equal s.Z.shape [| 3L; 6L |] "z shaped like z0"
                Expect.equal s.Norm ResidualNorm.Max "norm"
                seen.Add((s.Step, s.AbsResidual, expected))
            let r = Solver.run (Broyden.Create(o) |> Solver.observed observe) f (zeros 3L 6L)
            Expect.equal (seen |> Seq.map (fun (s, _, _) -> s) |> List.ofSeq) [ 1 .. r.Steps ] "one call per step, numbered"
            for _, abs, expected in seen do
                Expect.isLessThan (Array.map2 (fun (a: float) b -> Math.Abs(a - b)) abs expected |> Array.max) 1e-15 "max-norm residual"
        }

        test "CheckEvery tests for the stop every k steps only" {
            use scope = torch.NewDisposeScope()
            let _, f = { TanhProblem.Seed = 7; N = 6; Batch = 3; Rho = 0.8 }.Build()
            let every = ForwardIteration.Create(SolverOptions(Tol = 1e-8, MaxIter = 200))
            let fifth = ForwardIteration.Create(SolverOptions(Tol = 1e-8, MaxIter = 200, CheckEvery = 5))
            let a = Solver.run every f (zeros 3L 6L)
            let b = Solver.run fifth f (zeros 3L 6L)
            Expect.isTrue b.Converged $"{b}"
            Expect.equal (b.Steps % 5) 0 "stops on a check step"
            Expect.isGreaterThanOrEqual b.Steps a.Steps "never before the step-by-step test"
            Expect.isLessThan b.Steps (a.Steps + 5) "within k steps of it"
            for s in b.BestStepPerElement do
                Expect.isTrue (s = 1 || s % 5 = 0) $"the best iterate is taken on check steps only (step {s})"
        }

        test "a new solver is one step function" {
            use scope = torch.NewDisposeScope()
            let _, f = { TanhProblem.Seed = 7; N = 6; Batch = 3; Rho = 0.8 }.Build()
            let o = SolverOptions(Tol = 1e-9, MaxIter = 300)
            let half =
                SolverMethod.Create("half-step", (fun (ctx: SolveContext) (it: Iterate) ->
                    let z = it.Z.lerp(it.Fz, 0.5)
                    Iterate(z, ctx.Evaluate z)), o)
            let r = Solver.run half f (zeros 3L 6L)
            let reference = Solver.run (ForwardIteration.Create(o, 0.5)) f (zeros 3L 6L)
            Expect.isTrue r.Converged $"{r}"
            Expect.equal r.Solver "half-step" "name"
            Expect.equal r.Steps reference.Steps "steps"
            Expect.equal (maxAbsDiff r.Value reference.Value) 0.0 "same iterates as damped forward iteration"
        }
    ]

[<Tests>]
let batchScope =
    test "StopScope.Batch stops on the batch's combined residual, as the reference implementation does" {
        use scope = torch.NewDisposeScope()
        // Seven fast elements (rate 0.1, offset 1) and one slow, small one (rate 0.9, offset 0.01).
        let rate = torch.tensor([| 0.1; 0.1; 0.1; 0.1; 0.1; 0.1; 0.1; 0.9 |], dtype = ScalarType.Float64).reshape(8L, 1L)
        let offset = torch.tensor([| 1.0; 1.0; 1.0; 1.0; 1.0; 1.0; 1.0; 0.01 |], dtype = ScalarType.Float64).reshape(8L, 1L)
        let f (z: Tensor) = rate * z + offset
        let tol = 1e-4
        let every = Solver.run (ForwardIteration.Create(SolverOptions(Tol = tol, MaxIter = 500))) f (zeros 8L 3L)
        let batch = Solver.run (ForwardIteration.Create(SolverOptions(Tol = tol, MaxIter = 500, Over = StopScope.Batch))) f (zeros 8L 3L)
        Expect.isTrue every.Converged $"{every}"
        Expect.isTrue batch.Converged $"{batch}"
        Expect.isLessThan batch.Steps every.Steps "the combined residual is met before the slow element's own"
        Expect.isFalse batch.ConvergedPerElement[7] "the slow element is left above tol, and says so"
        Expect.stringContains batch.Reason "over the batch" "reason"
        let s = batch.Steps - 1
        let abs = [| for i in 0 .. 7 -> batch.AbsTracePerElement[i, s] |]
        let fz = [| for i in 0 .. 7 -> batch.AbsTracePerElement[i, s] / batch.RelTracePerElement[i, s] |]
        let combined = sqrt (Array.sumBy (fun a -> a * a) abs) / sqrt (Array.sumBy (fun a -> a * a) fz)
        Expect.isLessThanOrEqual combined (tol * (1.0 + 1e-9)) "the combined relative residual met tol at the last step"
    }
