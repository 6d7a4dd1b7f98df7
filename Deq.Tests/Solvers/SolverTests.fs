module Deq.Tests.Solvers.SolverTests

open System
open Expecto
open FsCheck.FSharp
open TorchSharp

open Deq.Solvers
open Deq.Tests.Support
open Deq.Tests.Support.Generators

let private absolute tol maxIter = SolverOptions(MaxIter = maxIter, Tol = tol, Stop = StopMode.Absolute)

/// Every solver under test, by name, at the given options.
let private solvers (o: SolverOptions) : (string * Solver) list =
    [ "forward", ForwardIteration.Create(o)
      "forward damped", ForwardIteration.Create(o, damping = 0.8)
      "anderson", Anderson.Create(o)
      "broyden", Broyden.Create(o)
      "broyden line-search", Broyden.Create(o, BroydenOptions(LineSearch = true)) ]

let private zerosLike (b: int) (n: int) = TestDevice.zerosOn (TestDevice.device ()) [ b; n ]

[<Tests>]
let exactFixedPoints =
    testList "solvers reach the exact fixed point" [
        testPropertyWithConfig (fsConfig 15) "linear z = Az + b, against torch.linalg.solve" <|
            Prop.forAll (linearProblems 0.2 0.9) (fun p ->
                use scope = torch.NewDisposeScope()
                let _, _, f, exact = p.Build()
                let tol = 1e-10
                // ||z - z*|| <= ||f(z) - z|| / (1 - rho) for a rho-contraction.
                let bound = tol / (1. - p.Rho) * 1.01
                for name, solve in solvers (absolute tol 2000) do
                    let r = TestDevice.withCpuCheck name (2. * bound) (fun (r: SolverResult) -> r.Value) (fun d ->
                        let _, _, f, _ = p.BuildOn d
                        solve.Invoke(Func<_, _> f, TestDevice.zerosOn d [ p.Batch; p.N ]))
                    Expect.isTrue r.Converged $"{name}: {r}"
                    Expect.isLessThanOrEqual (maxAbsDiff r.Value exact) bound $"{name} error vs exact")

        testPropertyWithConfig (fsConfig 15) "nonlinear tanh(Wz + Ux), against a long plain iteration" <|
            Prop.forAll (tanhProblems 0.2 0.9) (fun p ->
                use scope = torch.NewDisposeScope()
                let _, f = p.Build()
                let mutable reference = zerosLike p.Batch p.N
                for _ in 1 .. 3000 do reference <- f reference
                let tol = 1e-10
                let bound = tol / (1. - p.Rho) * 1.01 + 1e-13
                for name, solve in solvers (absolute tol 2000) do
                    let r = TestDevice.withCpuCheck name (2. * bound) (fun (r: SolverResult) -> r.Value) (fun d ->
                        let _, f = p.BuildOn d
                        solve.Invoke(Func<_, _> f, TestDevice.zerosOn d [ p.Batch; p.N ]))
                    Expect.isTrue r.Converged $"{name}: {r}"
                    Expect.isLessThanOrEqual (maxAbsDiff r.Value reference) bound $"{name} error")
    ]

[<Tests>]
let efficiency =
    testPropertyWithConfig (fsConfig 10) "Broyden and Anderson need fewer f evaluations than forward iteration at spectral radius >= 0.95" <|
        Prop.forAll (linearProblems 0.95 0.99) (fun p ->
            use scope = torch.NewDisposeScope()
            // A symmetric contraction: spectral radius equals the spectral norm.
            use g = generator p.Seed
            let q, _ = torch.linalg.qr(torch.randn([| int64 p.N; int64 p.N |], dtype = ScalarType.Float64, generator = g)).ToTuple()
            let eig = torch.linspace(-0.5, p.Rho, int64 p.N, dtype = ScalarType.Float64)
            let a = TestDevice.onDevice (torch.matmul(torch.matmul(q, torch.diag(eig)), q.T))
            let b = TestDevice.onDevice (torch.randn([| int64 p.Batch; int64 p.N |], dtype = ScalarType.Float64, generator = g))
            let f = Func<Tensor, Tensor>(fun z -> torch.matmul(z, a.T) + b)
            let o = absolute 1e-8 5000
            let forward = ForwardIteration.Create(o).Invoke(f, zerosLike p.Batch p.N)
            let anderson = Anderson.Create(o).Invoke(f, zerosLike p.Batch p.N)
            let broyden = Broyden.Create(o).Invoke(f, zerosLike p.Batch p.N)
            for r in [ forward; anderson; broyden ] do Expect.isTrue r.Converged $"{r}"
            Expect.isLessThan anderson.Evaluations forward.Evaluations "anderson vs forward"
            Expect.isLessThan broyden.Evaluations forward.Evaluations "broyden vs forward")
