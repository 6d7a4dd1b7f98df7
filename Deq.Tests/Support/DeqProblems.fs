/// A small random DEQ layer f(z; x) = tanh(W z + U x + b) with its parameters as autograd leaves.
module Deq.Tests.Support.DeqProblems

open System
open FsCheck
open FsCheck.FSharp
open TorchSharp
open Deq.Solvers
open Deq.Implicit
open Deq.Tests.Support.Generators

type Layer =
    { W: Tensor; U: Tensor; B: Tensor; X: Tensor; C: Tensor; Rho: float }
    member l.Leaves = [ l.W; l.U; l.B; l.X ]
    member l.F = Func<Tensor, Tensor>(fun z -> torch.tanh(torch.matmul(z, l.W.T) + torch.matmul(l.X, l.U.T) + l.B))
    member l.Z0 = torch.zeros([| l.X.shape[0]; l.W.shape[0] |], dtype = ScalarType.Float64)
    /// The scalar loss the gradient tests differentiate: a fixed random projection of z*.
    member l.Loss(z: Tensor) = (z * l.C).sum()

type LayerSpec =
    { Seed: int; N: int; Batch: int; Rho: float }
    member s.Build() =
        use g = generator s.Seed
        let leaf (t: Tensor) = t.requires_grad_(true)
        let shape (dims: int list) = dims |> List.map int64 |> Array.ofList
        { W = leaf (contractive g s.N s.Rho)
          U = leaf (torch.randn(shape [ s.N; s.N ], dtype = ScalarType.Float64, generator = g))
          B = leaf (torch.randn(shape [ s.N ], dtype = ScalarType.Float64, generator = g))
          X = leaf (torch.randn(shape [ s.Batch; s.N ], dtype = ScalarType.Float64, generator = g))
          C = torch.randn(shape [ s.Batch; s.N ], dtype = ScalarType.Float64, generator = g)
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
    Broyden.Create(o 200).OrElse(ForwardIteration.Create(o 5000))

/// What a solve and its backward pass reported.
type Solved = { Forward: SolverResult; Backward: BackwardReport option }

/// The options plus a cell that receives the adjoint's report once backward has run.
let reporting (o: EquilibriumOptions) =
    let report = ref None
    EquilibriumOptions(o.Forward, o.Adjoint, (fun r -> report.Value <- Some r)), report

/// Gradients of the loss with respect to every leaf, through Equilibrium.Solve with the given options.
let gradients (layer: Layer) (options: EquilibriumOptions) =
    use scope = torch.NewDisposeScope()
    let options, report = reporting options
    let eq = Equilibrium.Solve(layer.F, layer.Z0, options)
    let grads = torch.autograd.grad([| layer.Loss eq.Z |], Array.ofList layer.Leaves)
    let flat = torch.cat(grads |> Seq.map (fun g -> g.reshape(-1L)) |> Array.ofSeq, 0L)
    flat.MoveToOuterDisposeScope(), { Forward = eq.Forward; Backward = report.Value }

/// Central finite differences of the loss through a fixed-point solve done to 1e-13.
let finiteDifferences (layer: Layer) (h: float) =
    use noGrad = torch.no_grad()
    let loss () =
        let r = tight.Invoke(layer.F, layer.Z0)
        (layer.Loss r.Value).item<float>()
    let result = Collections.Generic.List<float>()
    for leaf in layer.Leaves do
        let flat = leaf.view(-1L)
        for i in 0L .. flat.shape[0] - 1L do
            let original = flat[i].item<float>()
            flat[i] <- torch.tensor(original + h, dtype = ScalarType.Float64)
            let up = loss ()
            flat[i] <- torch.tensor(original - h, dtype = ScalarType.Float64)
            let down = loss ()
            flat[i] <- torch.tensor(original, dtype = ScalarType.Float64)
            result.Add((up - down) / (2. * h))
    torch.tensor(result.ToArray(), dtype = ScalarType.Float64)

let relativeError (a: Tensor) (b: Tensor) = ((a - b).norm() / b.norm().clamp_min(1e-300)).item<float>()

/// The backward solve's statistics, failing the test when backward has not reported any.
let backwardOf (solved: Solved) : SolverResult =
    match solved.Backward with
    | None -> Expecto.Tests.failtest "no backward report after backward"
    | Some report -> report.Result
