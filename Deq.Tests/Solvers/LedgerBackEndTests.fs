/// The stop rule's two back ends (device tensors for accelerators, the host for CPU tensors) give the same solve.
module Deq.Tests.Solvers.LedgerBackEndTests

open System
open Expecto
open TorchSharp

open Deq.Solvers
open Deq.FSharp
open Deq.Tests.Support.Generators

let private zeros (b: int64) (n: int64) = torch.zeros([| b; n |], dtype = ScalarType.Float64)


/// Runs the solve with the ledger forced to one back end.
let private onBackEnd device (solve: Solver) f z0 =
    SolveLedger.ForceDevice <- Nullable device
    try Solver.run solve f z0
    finally SolveLedger.ForceDevice <- Nullable()

let private maps : (string * (Tensor -> Tensor)) list =
    [ "tanh", snd ({ TanhProblem.Seed = 3; N = 8; Batch = 4; Rho = 0.9 }.Build())
      "run-away z + 1 + 0.1 sin z", fun z -> z + 1.0 + 0.1 * torch.sin(z)
      "element 1 blows up (3z + 1)", snd (withElementOne (fun z -> 3.0 * z + 1.0))
      "element 1 turns NaN", elementOneTurnsNaN () ]

let private options : (string * SolverOptions) list =
    [ "relative", SolverOptions(Tol = 1e-9, MaxIter = 60)
      "absolute, max norm", SolverOptions(Tol = 1e-9, MaxIter = 60, Stop = StopMode.Absolute, Norm = ResidualNorm.Max)
      "check every 4", SolverOptions(Tol = 1e-9, MaxIter = 61, CheckEvery = 4)
      "batch stop", SolverOptions(Tol = 1e-7, MaxIter = 60, Over = StopScope.Batch)
      "tight divergence", SolverOptions(Tol = 1e-9, MaxIter = 60, DivergenceFactor = 1.5, MaxGrowth = 10.0) ]

[<Tests>]
let backEnds =
    testList "ledger back ends" [
        test "device and host bookkeeping give the same value, statuses, steps and reason, and traces to round-off (float64); Anderson's two mixings agree to round-off" {
            use scope = torch.NewDisposeScope()
            let seen = Collections.Generic.HashSet<SolverStatus>()
            for optName, o in options do
                for solverName, solve in [ "forward", ForwardIteration.Create(o); "anderson", Anderson.Create(o); "broyden", Broyden.Create(o) ] do
                    for mapName, f in maps do
                        let what = $"{solverName}, {optName}, {mapName}"
                        let z0 = zeros (if mapName = "tanh" then 4L else 3L) (if mapName = "tanh" then 8L else 6L)
                        let d = onBackEnd true solve f z0
                        let h = onBackEnd false solve f z0
                        // The host reads the norms from memory in C# (HostReductions), the device takes libtorch's: the same
                        // sums in another order, so traces agree to round-off and everything decided from them exactly.
                        let close tol (a: float[,]) (b: float[,]) =
                            Seq.forall2 (fun (x: float) y -> x = y || (Double.IsNaN x && Double.IsNaN y) || abs (x - y) <= tol * (1.0 + abs x)) (Seq.cast<float> a) (Seq.cast<float> b)
                        Expect.equal h.Status d.Status $"{what}: status ({h.Reason} | {d.Reason})"
                        Expect.equal h.StatusPerElement d.StatusPerElement what
                        if solverName <> "anderson" then
                            Expect.equal h.Reason d.Reason what
                            Expect.equal h.Steps d.Steps what
                            Expect.equal h.StepsPerElement d.StepsPerElement what
                            Expect.equal h.BestStepPerElement d.BestStepPerElement what
                            Expect.isTrue (close 1e-13 h.AbsTracePerElement d.AbsTracePerElement) $"{what}: traces"
                            Expect.isTrue (close 1e-13 h.RelTracePerElement d.RelTracePerElement) $"{what}: relative traces"
                            Expect.equal (maxAbsDiff h.Value d.Value) 0.0 $"{what}: the same best iterate"
                        elif mapName = "tanh" then
                            // LAPACK's bordered solve on the device, a Cholesky in C# on the host: the same weights to
                            // round-off, which a near-collinear history (the failing maps) amplifies, so Anderson's
                            // values are compared on the contracting map only.
                            Expect.equal h.Steps d.Steps what
                            Expect.isTrue (close 1e-9 h.AbsTracePerElement d.AbsTracePerElement) $"{what}: traces"
                            Expect.isLessThan (maxAbsDiff h.Value d.Value) 1e-9 $"{what}: best iterate"
                        seen.UnionWith h.StatusPerElement
            // The cases reach every way an element can end.
            Expect.equal (Set.ofSeq seen) (Set.ofList [ SolverStatus.Converged; SolverStatus.MaxIterations; SolverStatus.Diverged; SolverStatus.NonFinite ]) "statuses covered"
        }

        test "the forced back end is the one that runs: both paths are exercised" {
            use scope = torch.NewDisposeScope()
            let z = zeros 2L 3L
            SolveLedger.ForceDevice <- Nullable true
            try
                use ledger = SolveLedger.For(SolverOptions(), 2L, z)
                Expect.isTrue (ledger :? DeviceLedger) "forced to the device"
            finally SolveLedger.ForceDevice <- Nullable()
            use cpu = SolveLedger.For(SolverOptions(), 2L, z)
            Expect.isTrue (cpu :? HostLedger) "CPU tensors use the host"
        }
    ]
