// The toy of train-toy-deq.fsx, z* = tanh(W z* + U x + b) fitted to y = sin(3 x) on [-1, 1], trained with the
// reversible solver (McCallum, Arora and Foster, 2025): backward inverts the coupled relaxation step by step, so the
// gradient is exact for the steps taken, at memory constant in their number.
// Run from the repository root after `dotnet build -c Release Deq.FSharp`:
//   dotnet fsi examples/train-toy-reversible.fsx
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
using (torch.no_grad()) (fun _ -> recur.weight.mul_(torch.tensor 0.3f) |> ignore)

let parameters = [ inject; recur; readout ] |> Seq.collect (fun m -> m.parameters()) |> Array.ofSeq
let optimizer = torch.optim.Adam(parameters, lr = 0.01)
// x is explicit in f: backward evaluates f at rebuilt states against it. recur's parameters get their gradient from
// the solve; inject's through x, readout's through the loss.
let f (z: torch.Tensor) (injection: torch.Tensor) = torch.tanh(recur.forward z + injection)
let settings = { Reversible.defaults with Beta = 0.8; MaxIterations = 30; Tolerance = 1e-4 }

for step in 1 .. 200 do
    use scope = torch.NewDisposeScope()
    optimizer.zero_grad()
    let r = Reversible.solve settings f (inject.forward x) (recur.parameters()) (torch.zeros(128L, int64 width))
    let loss = torch.nn.functional.mse_loss(readout.forward r.Z, y)
    Equilibrium.backward loss
    optimizer.step() |> ignore
    if step % 25 = 0 || step = 1 then
        printfn "step %3d  loss %.5f  %2d coupled steps (%2d f evaluations), rel residual %.1e"
            step (loss.item<float32>()) r.Forward.Steps r.Forward.Evaluations r.Forward.RelLowest
