/// Deq.FSharp, the F# surface the notebooks and examples use: solvers as functions composed with |>,
/// settings as records, statuses and adjoints as patterns; the same numbers as the C# API.
module Deq.Tests.Notebooks.FSharpSurfaceTests

open System
open Expecto
open TorchSharp
open Deq.Implicit
open Deq.FSharp
open Deq.Tests.Support.DeqProblems

let private layer () = { Seed = 7; N = 6; Batch = 2; Rho = 0.9 }.Build()
/// The layer's f as an F# function.
let private fOf (l: Layer) (z: torch.Tensor) = torch.tanh(torch.matmul(z, l.W.T) + torch.matmul(l.X, l.U.T) + l.B)
let private tight = { Solver.defaults with MaxIter = 100; Tol = 1e-11 }

[<Tests>]
let tests =
    testList "F# surface" [
        test "solvers are built from records, composed with |> and applied as functions" {
            let l = layer ()
            let f = fOf l
            let solve = Solver.broyden { tight with MaxIter = 2 } |> Solver.orElse (Solver.anderson tight) |> Solver.toFunction
            let r = solve f l.Z0
            match r with
            | Converged steps -> Expect.isGreaterThan steps 2 "Broyden's 2 steps, then Anderson's"
            | _ -> failtestf "expected convergence, got %O" r
            Expect.isLessThan r.RelLowest 1e-11 "tolerance met"
            use residual = (f r.Value - r.Value).abs().max()
            Expect.isLessThan (residual.item<float>()) 1e-9 "a fixed point"
            Expect.stringContains (Solver.describe (Solver.broyden tight |> Solver.orElse (Solver.anderson tight))) "or else" "describes itself"
        }

        test "statuses match as patterns, with their reasons" {
            let l = layer ()
            match Solver.run (Solver.forwardIteration 1.0 { tight with MaxIter = 3 }) (fOf l) l.Z0 with
            | MaxIterations reason -> Expect.isNotEmpty reason "reason"
            | r -> failtestf "expected MaxIterations, got %O" r
            match Solver.run (Solver.anderson tight |> Solver.withBudget 4) (fOf l) l.Z0 with
            | BudgetExhausted reason -> Expect.stringContains reason "4" "names the budget"
            | r -> failtestf "expected BudgetExhausted, got %O" r
            let nan (z: torch.Tensor) = z * Double.NaN
            match Solver.run (Solver.anderson tight) nan l.Z0 with
            | NonFinite _ | Faulted _ | Diverged _ -> ()
            | r -> failtestf "expected a failure status, got %O" r
        }

        test "an F# function becomes a solver and back" {
            let l = layer ()
            let halfStep = Solver.ofFunction "one forward step" (fun f z0 -> Solver.run (Solver.forwardIteration 1.0 { tight with MaxIter = 1 }) f z0)
            Expect.equal (Solver.describe halfStep) "one forward step" "description kept"
            Expect.equal (Solver.run halfStep (fOf l) l.Z0).Evaluations 1 "runs the function"
        }

        test "Equilibrium.solve and backward give the C# API's z* and gradient, reporting through a pattern" {
            let forward = Solver.broyden { tight with MaxIter = 60 }
            let adjoint = Adjoint.Implicit(Solver.broyden { tight with MaxIter = 60 })
            let run (solveAndBackward: Layer -> torch.Tensor) =
                let l = layer ()
                let z = solveAndBackward l
                z.detach(), (nonNull l.W.grad).clone()
            let mutable reported = None
            let settings =
                { Equilibrium.defaults with
                    Forward = forward
                    Adjoint = adjoint
                    OnBackward = function AdjointSolved r -> reported <- Some r.Steps | AdjointFaulted e -> raise e }
            let zF, gF = run (fun l ->
                let eq = Equilibrium.solve settings (fOf l) l.Z0
                Equilibrium.backward (l.Loss eq.Z)
                eq.Z)
            let zC, gC = run (fun l ->
                let eq = Deq.Implicit.Equilibrium.Solve((fun z -> l.F z), l.Z0, EquilibriumOptions(forward, adjoint))
                Deq.Implicit.Equilibrium.Backward(l.Loss eq.Z)
                eq.Z)
            Expect.isTrue (zF.allclose(zC, rtol = 0.0, atol = 1e-14)) "same z*"
            Expect.isTrue (gF.allclose(gC, rtol = 0.0, atol = 1e-14)) "same gradient"
            Expect.isGreaterThan (defaultArg reported 0) 0 "the adjoint's steps arrived as AdjointSolved"
        }

        test "adjoints match as patterns" {
            let name (a: Adjoint) =
                match a with
                | Implicit _ -> "implicit"
                | JacobianFree -> "jacobian-free"
                | Phantom(k, damping) -> sprintf "phantom %d %g" k damping
                | Unrolled l -> sprintf "unrolled %d" l
                | Custom _ -> "custom"
            Expect.sequenceEqual
                (List.map name [ Adjoint.Implicit(); Adjoint.JacobianFree; Adjoint.Phantom(3, 0.5); Adjoint.Unrolled 4; Equilibrium.defaults.Adjoint ])
                [ "implicit"; "jacobian-free"; "phantom 3 0.5"; "unrolled 4"; "implicit" ] "each case"
        }

        test "Deq.FSharp references FSharp.Core 10.0, which the notebook kernels carry" {
            let core = typeof<SolverSettings>.Assembly.GetReferencedAssemblies() |> Array.find (fun a -> a.Name = "FSharp.Core")
            Expect.equal (nonNull core.Version) (System.Version(10, 0, 0, 0)) "FSharp.Core assembly version"
        }
    ]

/// A 2 -> 1 float64 regression built with the F# training surface: solver figures on every step, an evaluator, a
/// fingerprint, and a step counter as carried state; `onLoad` sees the counter a resumed run restores.
let private fsharpTask (onLoad: float -> unit) =
    torch.manual_seed 2L |> ignore
    let lin = torch.nn.Linear(2L, 1L, dtype = torch.ScalarType.Float64)
    let x = torch.ones([| 4L; 2L |], dtype = torch.ScalarType.Float64)
    let mutable taken = 0.0
    let step (_: Deq.Training.StepContext) =
        taken <- taken + 1.0
        (lin.call x - 1.0).square().mean()
        |> StepOutput.create 4L
        |> StepOutput.withStats (fun () -> Deq.Training.SolverStats(ForwardSteps = 7))
    TrainingTask.create lin step
    |> TrainingTask.withEvaluate (fun () -> Deq.Training.EvalOutput((lin.call x - 1.0).square().sum().ToDouble(), 4L))
    |> TrainingTask.withFingerprint [ "task", "fsharp" ]
    |> TrainingTask.withState (fun () -> readOnlyDict [ "taken", torch.tensor taken ]) (fun s -> taken <- s.["taken"].ToDouble(); onLoad taken)

[<Tests>]
let training =
    testList "F# training surface" [
        test "Equilibrium.defaults is the lean pair: plain iteration or else Anderson m=2, the implicit adjoint by history-free iterations" {
            let described = Solver.describe Equilibrium.defaults.Forward
            Expect.equal described (Solver.describe (EquilibriumOptions.LeanForward())) "EquilibriumOptions.LeanForward"
            Expect.stringStarts described "forward(" "plain iteration first"
            Expect.stringContains described "or else anderson(m=2" "Anderson m=2 as the fallback"
            match Equilibrium.defaults.Adjoint with
            | Implicit _ ->
                let adjoint = Equilibrium.defaults.Adjoint.Describe()
                Expect.stringContains adjoint "fixed point by forward(" "plain iteration on the adjoint"
                Expect.stringContains adjoint "or else forward(damping=0.5, " "damped iteration as its fallback"
            | other -> failtestf "expected the implicit adjoint, got %O" other
        }

        test "a task built in F# trains, logs to every sink with its solver figures, and checkpoints its state" {
            use d = new Deq.Tests.Support.Files.TempDir()
            let path = d.File "fs.ckpt"
            let options steps = Deq.Training.TrainOptions(Steps = steps, LearningRate = 0.01, CheckpointPath = path, Resume = true)
            let seen = Collections.Generic.List<int64>()
            let records = Collections.Generic.List<Deq.Training.LogRecord>()
            use json = new IO.StringWriter()
            let result =
                fsharpTask ignore
                |> TrainingTask.mapStep (fun step c -> seen.Add c.Step; step c)
                |> Trainer.run (options 3) (LogSinks.combine [ records.Add; LogSinks.jsonLines json ])
            Expect.sequenceEqual seen [ 0L; 1L; 2L ] "the wrapped step saw every step"
            let train, valid = records |> List.ofSeq |> List.partition (fun r -> r.Phase = Deq.Training.Phase.Train)
            Expect.equal (train |> List.map (LogRecord.solver >> Option.map _.ForwardSteps.Value)) [ Some 7; Some 7; Some 7 ] "withStats reached every training record"
            Expect.equal (json.ToString().Trim().Split('\n').Length) records.Count "jsonLines got every record combine passed on"
            Expect.equal (TrainResult.lastLoss result) (Some (List.last train).Loss) "lastLoss: the last training record's"
            Expect.equal (TrainResult.valid result |> Option.map _.Loss) (Some (List.exactlyOne valid).Loss) "valid: the evaluation's"
            Expect.isSome (LogRecord.learningRate train.Head) "a training record has a rate"
            Expect.isNone (LogRecord.gradNorm valid.Head) "an evaluation has no gradient norm"
            Expect.equal (Deq.Training.Trainer.Inspect path).Fingerprint.["task"] "fsharp" "withFingerprint reached the checkpoint"
            let mutable restored = None
            let resumed = fsharpTask (fun taken -> restored <- Some taken)
            Expect.isSome (TrainingTask.evaluator resumed) "withEvaluate set an evaluator"
            Expect.isNone (TrainingTask.evaluator (TrainingTask.create resumed.Module (TrainingTask.step resumed))) "create sets none"
            Expect.equal (resumed |> Trainer.runQuiet (options 5)).ResumedFrom 3L "resumed"
            Expect.equal restored (Some 3.0) "withState: the counter after 3 steps came back from the checkpoint"
        }

        test "MemoryLedger.measure: the F# settings give the C# call's static rows" {
            torch.manual_seed 1L |> ignore
            use cell = torch.nn.Linear(4L, 4L, dtype = torch.ScalarType.Float64)
            use z0 = torch.zeros(3L, 4L, dtype = torch.ScalarType.Float64)
            let f (z: torch.Tensor) = torch.tanh(cell.forward z * 0.3)
            let l = MemoryLedger.measure { MemoryLedger.defaults with Module = Some cell; OptimizerSlots = 1 } f z0 _.sum()
            Expect.equal (l.ParameterBytes, l.OptimizerStateBytes, l.StateBytes) ((16L + 4L) * 8L, (16L + 4L) * 8L, 12L * 8L) "parameters, one slot, one z"
            Expect.equal (MemoryLedger.measure MemoryLedger.defaults f z0 _.sum()).StaticBytes 0L "no module: no static rows"
        }
    ]
