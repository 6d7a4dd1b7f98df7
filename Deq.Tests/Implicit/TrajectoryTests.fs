/// Trajectory sampling for fixed-point-correction losses.
module Deq.Tests.Implicit.TrajectoryTests

open System
open Expecto
open TorchSharp
open Deq.Solvers
open Deq.Implicit
open Deq.FSharp
open Deq.Tests.Support.Generators
open Deq.Tests.Support.DeqProblems
open Deq.Tests.Support.Files

let private flatGrads (l: Layer) (z: Tensor) =
    let grads = torch.autograd.grad([| l.Loss z |], Array.ofList l.Leaves)
    torch.cat(grads |> Seq.map (fun g -> g.reshape(-1L)) |> Array.ofSeq, 0L)

/// Plain iteration that never stops early: step s holds f^(s-1)(z0).
let private iterations n = ForwardIteration.Create(SolverOptions(MaxIter = n, Tol = 1e-300, Stop = StopMode.Absolute))

[<Tests>]
let tests =
    testList "trajectory sampling" [
        test "the sample at step s is f^s(z0) and its gradient is one step of f from the detached f^(s-1)(z0)" {
            use scope = torch.NewDisposeScope()
            let layer = { Seed = 4; N = 5; Batch = 2; Rho = 0.8 }.Build()
            let r = Trajectory.sample (iterations 8) [ 2; 5 ] 1 1.0 layer.F layer.Z0
            Expect.equal (List.ofSeq r.Steps) [ 2; 5 ] "both reached"
            Expect.equal r.Samples.Count 3 "two samples and the final"
            let rec power k z = if k = 0 then z else power (k - 1) (layer.F z)
            let iterate k =
                use _ = torch.no_grad ()
                power k layer.Z0
            for s, sample in Seq.zip r.Steps r.Samples do
                let previous = iterate (s - 1)
                Expect.isLessThan (relativeError sample (layer.F previous)) 1e-13 $"step {s}: value"
                let g = flatGrads layer sample
                Expect.isLessThan (relativeError g (flatGrads layer (layer.F previous))) 1e-13 $"step {s}: gradient"
                Expect.isGreaterThan (g.norm().item<float>()) 0.0 "not zero"
        }

        test "the final sample's phantom gradient approaches the implicit gradient as its steps grow" {
            use scope = torch.NewDisposeScope()
            let layer = { Seed = 6; N = 6; Batch = 2; Rho = 0.7 }.Build()
            let implicit = flatGrads layer (Equilibrium.solve { Equilibrium.defaults with Forward = tight; Adjoint = Adjoint.Implicit(tight) } layer.F layer.Z0).Z
            let errorAt k = relativeError (flatGrads layer (Trajectory.sample tight [] k 0.5 layer.F layer.Z0).Final) implicit
            let errors = [ 1; 8; 200 ] |> List.map errorAt
            Expect.isLessThan errors.[2] 1e-6 $"200 phantom steps: {errors}"
            Expect.isLessThan errors.[2] errors.[0] "closer than one step"
        }

        test "steps the solve does not reach are left out; without gradients states come back detached" {
            use scope = torch.NewDisposeScope()
            let layer = { Seed = 7; N = 4; Batch = 1; Rho = 0.5 }.Build()
            let r = Trajectory.sample (iterations 6) [ 3; 500 ] 1 0.8 layer.F layer.Z0
            Expect.equal (List.ofSeq r.Steps) [ 3 ] "step 500 never ran"
            Expect.equal r.Samples.Count 2 "one sample and the final"
            use noGrad = torch.no_grad()
            let plain = Trajectory.sample (iterations 6) [ 3 ] 1 0.8 layer.F layer.Z0
            Expect.isFalse (plain.Samples |> Seq.exists (fun s -> s.requires_grad)) "no graph"
        }

        test "bad arguments are refused naming the argument, and nothing is left alive" {
            let layer = { Seed = 1; N = 3; Batch = 1; Rho = 0.5 }.Build()
            for steps in [ [ 0 ]; [ 3; 2 ]; [ 2; 2 ] ] do
                throwsWith<ArgumentException> [ "atSteps"; "increasing" ] (fun () -> Trajectory.sample tight steps 1 0.5 layer.F layer.Z0 |> ignore) |> ignore
            throwsWith<ArgumentOutOfRangeException> [ "phantomSteps" ] (fun () -> Trajectory.sample tight [] 0 0.5 layer.F layer.Z0 |> ignore) |> ignore
            throwsWith<ArgumentOutOfRangeException> [ "damping" ] (fun () -> Trajectory.sample tight [] 1 1.5 layer.F layer.Z0 |> ignore) |> ignore
            let before = torch.Tensor.TotalCount
            do
                use scope = torch.NewDisposeScope()
                Trajectory.sample (iterations 10) [ 2; 4; 6 ] 2 0.8 layer.F layer.Z0 |> ignore
            Expect.equal torch.Tensor.TotalCount before "every sampled copy freed with the caller's scope"
        }
    ]
