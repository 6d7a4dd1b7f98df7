// Peak RSS of one training step (forward + backward) of a dense DEQ f(z, x) = tanh(z W + x), one fresh process
// per configuration, as a user runs it (no MALLOC_* variable). From the repository root, after
// `dotnet build -c Release Deq.Core`: dotnet fsi examples/reversible-memory.fsx reversible|implicit|unrolled N
#r "../Deq.Core/bin/Release/net10.0/linux-x64/TorchSharp.dll"
#r "../Deq.Core/bin/Release/net10.0/linux-x64/Deq.Core.dll"
open System
open System.IO
open TorchSharp
open Deq.Solvers
open Deq.Implicit
open Deq.Training

let args = fsi.CommandLineArgs |> Array.skip 1
let mode, n = args.[0], int args.[1]
torch.set_num_threads 1
torch.manual_seed 0L |> ignore
let b, t, d = 15L, 150L, 512L
let w = (torch.randn([| d; d |]) * (0.5 / sqrt (float d))).requires_grad_(true)
let x = torch.randn([| b; t; d |]).requires_grad_(true)
let f2 (z: torch.Tensor) (x: torch.Tensor) = torch.tanh(torch.matmul(z, w) + x)
let step n =
    use scope = torch.NewDisposeScope()
    let z0 = torch.zeros([| b; t; d |])
    let z =
        match mode with
        | "reversible" -> (Reversible.Solve(Func<_, _, _> f2, x, z0, [ w ], ReversibleOptions(0.8, n, 0.0))).Z
        | "implicit" ->
            let o = SolverOptions(MaxIter = n, Tol = 1e-30)
            (Equilibrium.Solve(Func<_, _>(fun z -> f2 z x), z0, EquilibriumOptions(ForwardIteration.Create(o), Adjoint.Implicit(ForwardIteration.Create(o))))).Z
        | _ -> (Equilibrium.Solve(Func<_, _>(fun z -> f2 z x), z0, EquilibriumOptions(Adjoint = Adjoint.Unrolled n))).Z
    Equilibrium.Backward(z.square().mean())
step 1
for _ in 1 .. 2 do GC.Collect(); GC.WaitForPendingFinalizers()
File.WriteAllText("/proc/self/clear_refs", "5")
let before = ProcessMemory.Now()
step n
let after = ProcessMemory.Now()
let zBytes = float (b * t * d * 4L)
let peak = float (after.PeakRssBytes.Value - before.RssBytes.Value)
printfn "RESULT %s N=%d peak %.1f MiB = %.1f copies of z" mode n (peak / 1048576.0) (peak / zBytes)
