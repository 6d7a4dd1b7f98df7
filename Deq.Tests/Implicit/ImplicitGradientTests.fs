module Deq.Tests.Implicit.ImplicitGradientTests

open System
open Expecto
open FsCheck.FSharp
open TorchSharp
open Deq.Solvers
open Deq.Implicit
open Deq.FSharp
open Deq.Tests.Support
open Deq.Tests.Support.Generators
open Deq.Tests.Support.DeqProblems

let private implicitTight = { Equilibrium.defaults with Forward = tight; Adjoint = Adjoint.Implicit(tight) }

/// Gradient through `steps` plain applications of f from z0, by ordinary autograd.
let private unrolledGradient (layer: Layer) steps =
    gradients layer { Equilibrium.defaults with Adjoint = Adjoint.Unrolled steps } |> fst

[<Tests>]
let implicitGradient =
    testList "implicit gradient" [
        testPropertyWithConfig (fsConfig 6) "matches central finite differences to 1e-6 (every parameter and x)" <|
            Prop.forAll (layerSpecs 4 0.8) (fun spec ->
                use scope = torch.NewDisposeScope()
                let layer = spec.Build()
                let implicit, eq = gradients layer implicitTight
                let fd = finiteDifferences layer 1e-5
                Expect.isTrue eq.Forward.Converged $"forward: {eq.Forward}"
                Expect.isLessThan (relativeError implicit fd) 1e-6 "relative error vs finite differences")

        testPropertyWithConfig (fsConfig 8) "matches autograd through 500 unrolled iterations to 1e-6" <|
            Prop.forAll (layerSpecs 8 0.9) (fun spec ->
                use scope = torch.NewDisposeScope()
                let layer = spec.Build()
                let implicit, _ = gradients layer implicitTight
                // rho <= 0.9: 0.9^500 ~ 1e-23, so 500 steps sit at the fixed point in float64.
                let unrolled = unrolledGradient layer 500
                Expect.isLessThan (relativeError implicit unrolled) 1e-6 "relative error vs unrolled")

        testPropertyWithConfig (fsConfig 6) "phantom gradient approaches the implicit gradient as k grows" <|
            Prop.forAll (layerSpecs 6 0.8) (fun spec ->
                use scope = torch.NewDisposeScope()
                let layer = spec.Build()
                let implicit, _ = gradients layer implicitTight
                let errorAt k =
                    let g, _ = gradients layer { Equilibrium.defaults with Forward = tight; Adjoint = Adjoint.Phantom(k, 0.5) }
                    relativeError g implicit
                let errors = [ 1; 4; 16; 64; 256 ] |> List.map errorAt
                for a, b in List.pairwise errors do
                    Expect.isLessThanOrEqual b (a + 1e-12) $"error does not grow with k: {errors}"
                Expect.isLessThan (List.last errors) 1e-6 $"k = 256 is close: {errors}")

        test "the backward solver's tolerance is honoured and reported" {
            use scope = torch.NewDisposeScope()
            let layer = { Seed = 3; N = 6; Batch = 2; Rho = 0.9 }.Build()
            let implicit, _ = gradients layer implicitTight
            for tol in [ 1e-3; 1e-6; 1e-9 ] do
                let backward = Anderson.Create(SolverOptions(MaxIter = 500, Tol = tol, Stop = StopMode.Absolute))
                // Devices may stop the loose backward solve a step apart: allow the error the test allows.
                let g, eq = gradientsWithin (tol * 1e3) layer { Equilibrium.defaults with Forward = tight; Adjoint = Adjoint.Implicit(backward) }
                let stats = backwardOf eq
                Expect.isTrue stats.Converged $"tol {tol}: {stats}"
                Expect.isLessThanOrEqual stats.AbsLowest tol "residual within tol"
                // Error of g is at most residual / (1 - rho) per adjoint, amplified by ||df/dtheta||.
                Expect.isLessThan (relativeError g implicit) (tol * 1e3) $"gradient error tracks tol {tol}"
        }

        test "forward stats are per batch element; the backward report arrives only when backward runs" {
            use scope = torch.NewDisposeScope()
            let layer = { Seed = 4; N = 5; Batch = 3; Rho = 0.7 }.Build()
            let options, report = reporting implicitTight
            let eq = Equilibrium.solve options layer.F layer.Z0
            Expect.equal eq.Forward.AbsResidual.Length 3 "per element"
            Expect.isTrue eq.Forward.Converged "converged"
            Expect.isNone report.Value "no backward yet"
            Expect.isTrue eq.Z.requires_grad "attached to autograd"
            Equilibrium.backward (layer.Loss eq.Z)
            Expect.isTrue (report.Value |> Option.exists (fun r -> r.Result.Converged && r.Result.AbsResidual.Length = 3)) "reported once backward ran"
            use noGrad = torch.no_grad()
            let evalEq = Equilibrium.solve implicitTight layer.F layer.Z0
            Expect.isFalse evalEq.Z.requires_grad "no graph in evaluation"
        }
    ]

[<Tests>]
let failures =
    testList "failed backward solves" [
        test "a backward solve that runs out of steps is reported, gradients stay finite" {
            use scope = torch.NewDisposeScope()
            let layer = { Seed = 5; N = 6; Batch = 2; Rho = 0.95 }.Build()
            let weak = ForwardIteration.Create(SolverOptions(MaxIter = 2, Tol = 1e-12))
            let g, eq = gradients layer { Equilibrium.defaults with Forward = tight; Adjoint = Adjoint.Implicit(weak) }
            Expect.equal (backwardOf eq).Status SolverStatus.MaxIterations $"{backwardOf eq}"
            Expect.isFalse (backwardOf eq).Converged "not converged"
            Expect.isTrue (torch.isfinite(g).all().item<bool>()) "finite gradients"
        }

        test "a diverging adjoint iteration is reported as Diverged, never NaN gradients" {
            use scope = torch.NewDisposeScope()
            // f(z) = 1.5 z + x: Broyden finds z* = -2x, but plain iteration on the adjoint
            // g = 1.5 g + dL/dz* blows up.
            let x = TestDevice.onDevice(torch.randn([| 2L; 3L |], dtype = ScalarType.Float64, generator = generator 1)).requires_grad_(true)
            let f (z: Tensor) = 1.5 * z + x
            let options = { Equilibrium.defaults with Forward = tight; Adjoint = Adjoint.Implicit(ForwardIteration.Create(SolverOptions(MaxIter = 500, Tol = 1e-10))) }
            let options, report = reporting options
            let eq = Equilibrium.solve options f (TestDevice.zerosOn (TestDevice.device ()) [ 2; 3 ])
            Expect.isLessThan (maxAbsDiff eq.Z (-2.0 * x)) 1e-9 "forward found the unstable fixed point"
            let g = torch.autograd.grad([| eq.Z.sum() |], [| x |])[0]
            let b = reportedBackward report.Value
            Expect.isTrue (b.Status = SolverStatus.Diverged || b.Status = SolverStatus.NonFinite) $"{b}"
            Expect.isTrue (torch.isfinite(g).all().item<bool>()) "finite gradients"
        }
    ]

[<Tests>]
let robustness =
    testList "backward robustness" [
        test "an exception inside the adjoint solve is recorded, not a process abort" {
            use scope = torch.NewDisposeScope()
            let x = torch.ones([| 2L; 3L |], dtype = ScalarType.Float64, device = TestDevice.device ()).requires_grad_(true)
            let f (z: Tensor) = 0.5 * z + x
            let throwing = Solver(fun _ _ -> invalidOp "adjoint solver exploded")
            let options, report = reporting { Equilibrium.defaults with Forward = tight; Adjoint = Adjoint.Implicit(throwing) }
            let solve () = Equilibrium.solve options f (TestDevice.zerosOn (TestDevice.device ()) [ 2; 3 ])
            let g = torch.autograd.grad([| (solve ()).Z.sum() |], [| x |])[0]
            let b = reportedBackward report.Value
            Expect.equal b.Status SolverStatus.Faulted "status Faulted"
            Expect.stringContains b.Reason "adjoint solver exploded" "reason carries the message"
            Expect.isTrue (report.Value |> Option.exists (fun r -> r.Faulted)) "the report carries the exception"
            Expect.equal (g.abs().sum().item<float>()) 0.0 "zero gradient through the faulted equilibrium"
            let e = Expect.throwsT<ImplicitBackwardException> (fun () -> Equilibrium.backward ((solve ()).Z.sum())) "Equilibrium.Backward raises it"
            ()
        }

        test "a second Equilibrium.Backward of the same loss is refused in one line, not a process abort" {
            use scope = torch.NewDisposeScope()
            let x = torch.ones([| 2L; 3L |], dtype = ScalarType.Float64, device = TestDevice.device ()).requires_grad_(true)
            let f (z: Tensor) = 0.5 * z + x
            let solve () = Equilibrium.solve { Equilibrium.defaults with Forward = tight } f (TestDevice.zerosOn (TestDevice.device ()) [ 2; 3 ])
            // z*.sum(): nothing between the loss and the adjoint's node saves a tensor, the case that ended the process.
            let loss = (solve ()).Z.sum()
            let grad () = match x.grad with | null -> failtest "no gradient reached x" | g -> g.clone()
            Equilibrium.backward loss
            let first = grad ()
            match (try Equilibrium.backward loss; None with :? InvalidOperationException as e -> Some e) with
            | None -> failtest "a second backward of the same loss was not refused"
            | Some e -> Expect.stringContains e.Message "already backpropagated" e.Message
            Expect.equal (maxAbsDiff (grad ()) first) 0.0 "the gradient is left as the first backward made it"
            Equilibrium.backward ((solve ()).Z.sum())
            Expect.isLessThan (maxAbsDiff (grad ()) (2.0 * first)) 1e-12 "a new forward pass backpropagates as usual"
        }

        test "backward never calls f: one graph of f at z* serves the adjoint's products" {
            use scope = torch.NewDisposeScope()
            let layer = { Seed = 7; N = 5; Batch = 2; Rho = 0.8 }.Build()
            let mutable calls = 0
            let f (z: Tensor) =
                calls <- calls + 1
                layer.F z
            let eq = Equilibrium.solve implicitTight f layer.Z0
            let afterForward = calls
            Equilibrium.backward (layer.Loss eq.Z)
            Expect.equal calls afterForward "no application of f during backward"
        }

        test "a caller's DisposeScope around the solve does not break the implicit gradient" {
            use outer = torch.NewDisposeScope()
            let layer = { Seed = 8; N = 4; Batch = 2; Rho = 0.7 }.Build()
            let expected, _ = gradients layer implicitTight
            let loss =
                use inner = torch.NewDisposeScope()
                let eq = Equilibrium.solve implicitTight layer.F layer.Z0
                (layer.Loss eq.Z).MoveToOuterDisposeScope()
            let grads = torch.autograd.grad([| loss |], Array.ofList layer.Leaves)
            let flat = torch.cat(grads |> Seq.map (fun g -> g.reshape(-1L)) |> Array.ofSeq, 0L)
            Expect.isLessThan (relativeError flat expected) 1e-12 "same gradient after the inner scope released z* and f(z*)"
        }

        test "GMRES on the adjoint matches the fixed-point adjoint, and solves where plain iteration diverges" {
            use scope = torch.NewDisposeScope()
            let layer = { Seed = 9; N = 6; Batch = 3; Rho = 0.9 }.Build()
            let expected, _ = gradients layer implicitTight
            let gmres = LinearSolve.Gmres(SolverOptions(MaxIter = 60, Tol = 1e-13, Stop = StopMode.Absolute), restart = 4)
            let g, solved = gradients layer { Equilibrium.defaults with Forward = tight; Adjoint = Adjoint.Implicit(gmres) }
            Expect.isTrue (backwardOf solved).Converged $"{backwardOf solved}"
            Expect.isLessThan (relativeError g expected) 1e-9 "GMRES adjoint = fixed-point adjoint"
            // f(z) = 1.5 z + x: (I - J^T) = -0.5 I, so dz*/dx = -2; plain iteration on the adjoint diverges.
            let x = TestDevice.onDevice(torch.randn([| 2L; 3L |], dtype = ScalarType.Float64, generator = generator 2)).requires_grad_(true)
            let f (z: Tensor) = 1.5 * z + x
            let eq = Equilibrium.solve { Equilibrium.defaults with Forward = tight; Adjoint = Adjoint.Implicit(gmres) } f (TestDevice.zerosOn (TestDevice.device ()) [ 2; 3 ])
            let gx = torch.autograd.grad([| eq.Z.sum() |], [| x |])[0]
            Expect.isLessThan (maxAbsDiff gx (torch.full_like(x, -2.0))) 1e-10 "dz*/dx = -2"
        }

        test "the default adjoint converges where plain iteration oscillates: its damped fallback, for an eigenvalue below -1" {
            use scope = torch.NewDisposeScope()
            // f(z) = -1.5 z + x: z* = x / 2.5 and dz*/dx = 1 / 2.5. Plain iteration on g = -1.5 g + v diverges; damped
            // iteration g <- (g - 1.5 g + v) / 2 contracts by 0.25 a step. The default forward (Anderson m = 2 after
            // plain iteration) solves the linear map too.
            let x = TestDevice.onDevice(torch.randn([| 2L; 3L |], dtype = ScalarType.Float64, generator = generator 3)).requires_grad_(true)
            let f (z: Tensor) = -1.5 * z + x
            let options, report = reporting Equilibrium.defaults
            let eq = Equilibrium.solve options f (TestDevice.zerosOn (TestDevice.device ()) [ 2; 3 ])
            Expect.isLessThan (maxAbsDiff eq.Z (x * 0.4)) 1e-3 "forward: z* = x / 2.5 (to the default relative 1e-4)"
            let gx = torch.autograd.grad([| eq.Z.sum() |], [| x |])[0]
            let b = reportedBackward report.Value
            Expect.isTrue b.Converged $"the adjoint converged: {b}"
            Expect.stringContains b.Solver ">" $"the fallback ran (plain iteration diverges): {b.Solver}"
            Expect.isLessThan (maxAbsDiff gx (torch.full_like(x, 0.4))) 1e-4 "dz*/dx = 1 / 2.5"
        }

        test "an f that ignores z (J = 0) differentiates to the one-step gradient" {
            use scope = torch.NewDisposeScope()
            let x = torch.ones([| 2L; 3L |], dtype = ScalarType.Float64, device = TestDevice.device ()).requires_grad_(true)
            let f (_: Tensor) = 3.0 * x
            let options, report = reporting { Equilibrium.defaults with Forward = tight; Adjoint = Adjoint.Implicit(tight) }
            let eq = Equilibrium.solve options f (TestDevice.zerosOn (TestDevice.device ()) [ 2; 3 ])
            let g = torch.autograd.grad([| eq.Z.sum() |], [| x |])[0]
            Expect.isLessThan (maxAbsDiff g (torch.full_like(x, 3.0))) 1e-12 "dz*/dx = 3"
            Expect.isTrue (report.Value.IsNone || (Option.get report.Value).Result.Converged) "adjoint solved (or not needed: f(z*) does not depend on z)"
        }
    ]

[<Tests>]
let memory =
    test "forward plus backward holds as many live tensors at 200 solver iterations as at 10" {
        let layer = { Seed = 6; N = 8; Batch = 2; Rho = 0.9 }.Build()
        // An orthogonal linear map: plain iteration neither converges nor diverges, so both solves
        // run exactly `iters` steps whatever the tolerance.
        let q, _ = torch.linalg.qr(torch.randn([| 8L; 8L |], dtype = ScalarType.Float64, generator = generator 6)).ToTuple()
        let q = TestDevice.onDevice q
        let rotate (z: Tensor) = torch.matmul(z, q.T) + torch.matmul(layer.X, layer.U.T) + layer.B
        let measure iters =
            // Finalize other tests' leftover tensors now, not during the count.
            GC.Collect()
            GC.WaitForPendingFinalizers()
            let before = torch.Tensor.TotalCount
            let mutable peak = 0L
            let counting (z: Tensor) =
                peak <- max peak (torch.Tensor.TotalCount - before)
                rotate z
            let solver = ForwardIteration.Create(SolverOptions(MaxIter = iters, Tol = 1e-12))
            let options, report = reporting { Equilibrium.defaults with Forward = solver; Adjoint = Adjoint.Implicit(solver) }
            let run () =
                use scope = torch.NewDisposeScope()
                let eq = Equilibrium.solve options counting layer.Z0
                // W is not in this map; asking for its gradient would abort libtorch.
                let grads = torch.autograd.grad([| layer.Loss eq.Z |], [| layer.U; layer.B; layer.X |])
                Expect.equal eq.Forward.Steps iters "forward ran all steps"
                Expect.equal (reportedBackward report.Value).Steps iters "backward ran all steps"
                grads.Count
            let _ = run ()
            peak, torch.Tensor.TotalCount - before
        let peak10, left10 = measure 10
        let peak200, left200 = measure 200
        Expect.equal peak200 peak10 "peak live tensors independent of iterations"
        Expect.equal (left10, left200) (0L, 0L) "nothing leaks"
    }

/// The layer's f, offering its own product g -> W^T (g (1 - y^2)) when the implicit adjoint asks.
let private offering (layer: Layer) (z: Tensor) =
    let y = layer.F z
    if VectorJacobian.wanted () then
        VectorJacobian.offer y [ y.detach(); layer.W.detach() ] (fun saved g ->
            match saved with
            | [ y; w ] -> torch.matmul(g * (1.0 - y * y), w)
            | _ -> failwith "two saved tensors")
    y

[<Tests>]
let offeredProducts =
    testPropertyWithConfig (fsConfig 25) "a user's f offering its own vector-Jacobian product: the implicit gradient equals autograd's product's and finite differences" <|
        Prop.forAll (layerSpecs 6 0.9) (fun spec ->
            use scope = torch.NewDisposeScope()
            let layer = spec.Build()
            let options, report = reporting implicitTight
            let solve f =
                let eq = Equilibrium.solve options f layer.Z0
                torch.cat(torch.autograd.grad([| layer.Loss eq.Z |], Array.ofList layer.Leaves) |> Seq.map (fun g -> g.reshape(-1L)) |> Array.ofSeq, 0L)
            let offered () = report.Value |> Option.map (fun r -> r.OfferedProduct)
            let own = solve (offering layer)
            Expect.equal (offered ()) (Some true) "the adjoint solved with f's product"
            let autograd = solve layer.F
            Expect.equal (offered ()) (Some false) "and without an offer, with autograd's"
            Expect.isLessThan (relativeError own autograd) 1e-10 "the same gradient as with autograd's product"
            let fd = finiteDifferences layer 1e-5
            Expect.isLessThan (relativeError own fd) 1e-6 "and as finite differences")
