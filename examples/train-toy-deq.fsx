// Train a one-layer DEQ, z* = tanh(W z* + U x + b), to fit y = sin(3 x) on [-1, 1].
// Run from the repository root after `dotnet build -c Release Deq.FSharp`:
//   dotnet fsi examples/train-toy-deq.fsx
#r "../Deq.Core/bin/Release/net10.0/linux-x64/TorchSharp.dll"
#r "../Deq.Core/bin/Release/net10.0/linux-x64/Deq.Core.dll"
#r "../Deq.FSharp/bin/Release/net10.0/linux-x64/Deq.FSharp.dll"

open TorchSharp
open Deq.Implicit
open Deq.FSharp

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
let mutable backward = None
let settings =
    { Equilibrium.defaults with
        Forward = Solver.broyden { Solver.defaults with MaxIter = 30; Tol = 1e-5 }
        Adjoint = Adjoint.Implicit(Solver.broyden { Solver.defaults with MaxIter = 30; Tol = 1e-6 })
        OnBackward = function
                     | AdjointSolved result -> backward <- Some result
                     | AdjointFaulted error -> failwithf "adjoint solve faulted: %s" error.Message }

for step in 1 .. 200 do
    use scope = torch.NewDisposeScope()
    optimizer.zero_grad()
    let injection = inject.forward x
    let f z = torch.tanh(recur.forward z + injection)
    let eq = Equilibrium.solve settings f (torch.zeros(128L, int64 width))
    let loss = torch.nn.functional.mse_loss(readout.forward eq.Z, y)
    Equilibrium.backward loss
    optimizer.step() |> ignore
    if step % 25 = 0 || step = 1 then
        let steps, rel = match backward with Some b -> b.Steps, b.RelLowest | None -> 0, nan
        printfn "step %3d  loss %.5f  forward %2d steps (rel %.1e)  backward %2d steps (rel %.1e)"
            step (loss.item<float32>()) eq.Forward.Steps eq.Forward.RelLowest steps rel
