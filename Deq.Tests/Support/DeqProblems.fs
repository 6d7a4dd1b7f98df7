/// A small random DEQ layer f(z; x) = tanh(W z + U x + b) with its parameters as autograd leaves.
module Deq.Tests.Support.DeqProblems

open System
open FsCheck
open FsCheck.FSharp
open TorchSharp
open Deq.Solvers
open Deq.Implicit
open Deq.FSharp
open Deq.Tests.Support.Generators

type Layer =
    { W: Tensor; U: Tensor; B: Tensor; X: Tensor; C: Tensor; Rho: float }
    member l.Leaves = [ l.W; l.U; l.B; l.X ]
    member l.F(z: Tensor) = torch.tanh(torch.matmul(z, l.W.T) + torch.matmul(l.X, l.U.T) + l.B)
    member l.Z0 = torch.zeros([| l.X.shape[0]; l.W.shape[0] |], dtype = ScalarType.Float64, device = l.W.device)
    /// The same layer with its leaves copied to the CPU (for the cross-device check).
    member l.OnCpu() =
        let leaf (t: Tensor) = t.detach().cpu().requires_grad_(true)
        { l with W = leaf l.W; U = leaf l.U; B = leaf l.B; X = leaf l.X; C = l.C.cpu() }
    /// The scalar loss the gradient tests differentiate: a fixed random projection of z*.
    member l.Loss(z: Tensor) = (z * l.C).sum()

type LayerSpec =
    { Seed: int; N: int; Batch: int; Rho: float }
    /// On the test device (TestDevice); drawn on the CPU, so every device gets the same layer.
    member s.Build() = s.BuildOn(TestDevice.device ())
    member s.BuildOn(device: torch.Device) =
        use g = generator s.Seed
        let leaf (t: Tensor) = t.``to``(device).requires_grad_(true)
        let shape (dims: int list) = dims |> List.map int64 |> Array.ofList
        { W = leaf (contractive g s.N s.Rho)
          U = leaf (torch.randn(shape [ s.N; s.N ], dtype = ScalarType.Float64, generator = g))
          B = leaf (torch.randn(shape [ s.N ], dtype = ScalarType.Float64, generator = g))
          X = leaf (torch.randn(shape [ s.Batch; s.N ], dtype = ScalarType.Float64, generator = g))
          C = torch.randn(shape [ s.Batch; s.N ], dtype = ScalarType.Float64, generator = g).``to`` device
          Rho = s.Rho }

let layerSpecs maxN rhoHi =
    gen {
        let! seed = Gen.choose (0, 1_000_000)
        let! n = Gen.choose (2, maxN)
        let! batch = Gen.choose (1, 3)
        let! rho = Gen.choose (30, int (rhoHi * 100.))
        return { Seed = seed; N = n; Batch = batch; Rho = float rho / 100. }
    }
    |> Arb.fromGen

/// A solver tight enough that its error is negligible next to the 1e-6 checks.
let tight =
    let o iters = SolverOptions(MaxIter = iters, Tol = 1e-13, Stop = StopMode.Absolute)
    Broyden.Create(o 200) |> Solver.orElse (ForwardIteration.Create(o 5000))

let relativeError (a: Tensor) (b: Tensor) = ((a - b).norm() / b.norm().clamp_min(1e-300)).item<float>()

/// What a solve and its backward pass reported.
type Solved = { Forward: SolverResult; Backward: BackwardReport option }

/// The settings plus a cell that receives the adjoint's report once backward has run.
let reporting (settings: EquilibriumSettings) =
    let report = ref None
    { settings with OnBackward = fun r -> report.Value <- Some r }, report

let private gradientsOn (layer: Layer) (settings: EquilibriumSettings) =
    use scope = torch.NewDisposeScope()
    let settings, report = reporting settings
    let eq = Equilibrium.solve settings layer.F layer.Z0
    let grads = torch.autograd.grad([| layer.Loss eq.Z |], Array.ofList layer.Leaves)
    let flat = torch.cat(grads |> Seq.map (fun g -> g.reshape(-1L)) |> Array.ofSeq, 0L)
    flat.MoveToOuterDisposeScope(), { Forward = eq.Forward; Backward = report.Value }

/// Gradients of the loss with respect to every leaf, through Equilibrium.solve with the given settings.
/// Off the CPU, the same gradients from a CPU copy of the layer must agree to relative error cpuTol.
let gradientsWithin (cpuTol: float) (layer: Layer) (settings: EquilibriumSettings) =
    let flat, eq = gradientsOn layer settings
    if layer.W.device_type <> DeviceType.CPU then
        let reference, _ = gradientsOn (layer.OnCpu()) settings
        TestDevice.expectAgreement "gradient" (relativeError (flat.cpu()) reference) cpuTol
    flat, eq

/// gradientsWithin at 1e-8: both devices solve to 1e-13, so only rounding separates them.
let gradients layer settings = gradientsWithin 1e-8 layer settings

/// Central finite differences of the loss through a fixed-point solve done to 1e-13.
let finiteDifferences (layer: Layer) (h: float) =
    use noGrad = torch.no_grad()
    let loss () =
        let r = Solver.run tight layer.F layer.Z0
        (layer.Loss r.Value).item<float>()
    let result = Collections.Generic.List<float>()
    for leaf in layer.Leaves do
        let flat = leaf.view(-1L)
        for i in 0L .. flat.shape[0] - 1L do
            let original = flat[i].item<float>()
            let set (v: float) = flat[i] <- torch.tensor(v, dtype = ScalarType.Float64, device = leaf.device)
            set (original + h)
            let up = loss ()
            set (original - h)
            let down = loss ()
            set original
            result.Add((up - down) / (2. * h))
    torch.tensor(result.ToArray(), dtype = ScalarType.Float64, device = layer.W.device)

/// The backward solve's statistics, failing the test when backward has not reported any.
let reportedBackward (report: BackwardReport option) : SolverResult =
    match report with
    | None -> Expecto.Tests.failtest "no backward report after backward"
    | Some report -> report.Result

/// The backward solve's statistics of a solve, failing the test when backward has not reported any.
let backwardOf (solved: Solved) : SolverResult = reportedBackward solved.Backward
