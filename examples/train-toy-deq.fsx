// Train a one-layer DEQ, z* = tanh(W z* + U x + b), to fit y = sin(3 x) on [-1, 1].
// Run from the repository root after `dotnet build -c Release Deq.Core`:
//   dotnet fsi examples/train-toy-deq.fsx
#r "../Deq.Core/bin/Release/net10.0/linux-x64/TorchSharp.dll"
#r "../Deq.Core/bin/Release/net10.0/linux-x64/Deq.Core.dll"

open System
open TorchSharp
open Deq.Solvers
open Deq.Implicit

torch.manual_seed 0L |> ignore
let width = 32
let x = torch.linspace(-1.0, 1.0, 128L).unsqueeze(1)
let y = torch.sin(3.0 * x)

let lin inp out = torch.nn.Linear(int64 inp, int64 out)
let inject, recur, readout = lin 1 width, lin width width, lin width 1
// Start contractive: a small recurrent weight keeps z -> f(z) well inside the unit ball.
using (torch.no_grad()) (fun _ -> recur.weight.mul_(torch.tensor 0.3f) |> ignore)

let parameters = [ inject; recur; readout ] |> Seq.collect (fun m -> m.parameters()) |> Array.ofSeq
let optimizer = torch.optim.Adam(parameters, lr = 0.01)
// The adjoint's statistics arrive once backward has run.
let backward = ref None
let options =
    EquilibriumOptions(
        Forward = Broyden.Create(SolverOptions(MaxIter = 30, Tol = 1e-5)),
        Adjoint = Adjoint.Implicit(Broyden.Create(SolverOptions(MaxIter = 30, Tol = 1e-6))),
        OnBackward = (fun report -> backward.Value <- Some report.Result))

for step in 1 .. 200 do
    use scope = torch.NewDisposeScope()
    optimizer.zero_grad()
    let injection = inject.forward x
    let f = Func<torch.Tensor, torch.Tensor>(fun z -> torch.tanh(recur.forward z + injection))
    let eq = Equilibrium.Solve(f, torch.zeros(128L, int64 width), options)
    let loss = torch.nn.functional.mse_loss(readout.forward eq.Z, y)
    Equilibrium.Backward loss
    optimizer.step() |> ignore
    if step % 25 = 0 || step = 1 then
        let steps, rel = match backward.Value with Some b -> b.Steps, b.RelLowest | None -> 0, nan
        printfn "step %3d  loss %.5f  forward %2d steps (rel %.1e)  backward %2d steps (rel %.1e)"
            step (loss.item<float32>()) eq.Forward.Steps eq.Forward.RelLowest steps rel
