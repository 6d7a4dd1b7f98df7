// Where one training step's memory goes, solver step by solver step: resident memory and the peak since the
// previous step, in copies of z, for the DEQ-TrellisNet or DEQ-Transformer core (width 256, sequence 150, batch 15,
// float32, one thread) with the lean training default, every stage forced to run N steps (tolerance unreachable).
// As a user runs it: no MALLOC_* variable (Deq.Native.FreedMemory applies itself). Linux only (/proc/self).
// From the repository root, after `dotnet build -c Release Deq.Core`:
//   dotnet fsi examples/memory-trace.fsx trellisnet|transformer N
#r "../Deq.Core/bin/Release/net10.0/linux-x64/TorchSharp.dll"
#r "../Deq.Core/bin/Release/net10.0/linux-x64/Deq.Core.dll"
open System
open System.IO
open TorchSharp
open Deq.Solvers
open Deq.Implicit
open Deq.Models

let args = fsi.CommandLineArgs |> Array.skip 1
let transformer = args.Length > 0 && args.[0] = "transformer"
let n = if args.Length > 1 then int args.[1] else 30
torch.set_num_threads 1
torch.manual_seed 0L |> ignore
let b, t, w = 15L, 150L, 256

// The core and a bind function returning f, z0 and what frees the injection once z* is solved.
let (core: torch.nn.Module), bind =
    if transformer then
        let c = new DeqTransformerCore(DeqTransformerConfig(DModel = w, NHead = 4, DHead = 64, DInner = 4 * w, SeqLen = int t, MemLen = 0, InitStd = 0.05 * sqrt (410.0 / float w)))
        let x = torch.randn(b, t, int64 w)
        (c :> torch.nn.Module), (fun () -> let cell = c.Bind(x, null) in cell.F, cell.Z0, (fun () -> cell.Release()))
    else
        let nOut = int (Math.Round(float w * 2.0 / 7.0))
        let c = new DeqTrellisNetCore(DeqTrellisNetConfig(NInp = nOut, NHid = w - nOut, NOut = nOut, SeqLen = int t))
        let x = torch.randn(b, t, int64 nOut)
        (c :> torch.nn.Module), (fun () -> let cell = c.Bind(x, null) in cell.F, cell.Z0, (fun () -> cell.Release()))
core.train() |> ignore
let zMiB = float (b * t * (if transformer then int64 w else 2L * int64 (core :?> DeqTrellisNetCore).Config.HSize) * 4L) / 1048576.0

let status () =
    let lines = File.ReadAllLines "/proc/self/status"
    let get (k: string) = lines |> Array.find (fun l -> l.StartsWith k) |> fun l -> float (l.Split([| ' '; '\t' |], StringSplitOptions.RemoveEmptyEntries).[1]) / 1024.0
    get "VmRSS:", get "VmHWM:"
let resetPeak () = File.WriteAllText("/proc/self/clear_refs", "5")
let mutable baseline = 0.0
let mutable print = false
let log (tag: string) =
    if print then
        let rss, peak = status ()
        printfn "%-16s resident %6.1f z   peak since last %6.1f z" tag ((rss - baseline) / zMiB) ((peak - baseline) / zMiB)
        resetPeak ()

let options steps =
    let o = SolverOptions(MaxIter = steps, Tol = 1e-30)
    let observe name = Action<SolverStep>(fun s -> log $"{name} {s.Step}")
    // The lean default's stages, each observed: LeanForward itself, and LeanAdjointSolve's solver spelled out
    // (a LinearSolver cannot be observed step by step).
    let forward = EquilibriumOptions.LeanForward(steps, 1e-30).Observed(observe "forward")
    let adjoint = LinearSolve.FixedPoint(ForwardIteration.Create(o).OrElse(ForwardIteration.Create(o, 0.5)).Observed(observe "adjoint"))
    EquilibriumOptions(forward, Adjoint.Implicit(adjoint))

let step steps =
    use scope = torch.NewDisposeScope()
    let f, z0, release = bind ()
    log "bound"
    let eq = Equilibrium.Solve(f, z0, options steps)
    release ()
    log "solved"
    let loss = (use s = torch.NewDisposeScope() in s.MoveToOuter(eq.Z.square().mean()))
    Equilibrium.Backward loss
    log "backward"

// Warm-up: the code paths (tiered JIT) and kernels, then the measured step.
for _ in 1..3 do step 40
Threading.Thread.Sleep 500
GC.Collect(); GC.WaitForPendingFinalizers(); GC.Collect()
baseline <- fst (status ())
resetPeak ()
print <- true
printfn "%s core, z = %.2f MiB, N = %d per stage; baseline %.1f MiB" (if transformer then "DEQ-Transformer" else "DEQ-TrellisNet") zMiB n baseline
step n
