// The h 512 solver-overhead section of `deq bench` on its own (as `deq bench solver`), from F#: per-step overhead over f of forward iteration,
// Anderson and Broyden on the DEQ-TrellisNet core (h 512, sequence 30, batch 4, float32, one thread, 20 steps each,
// tolerance unreachable, least of 3 solves after a second of warm-up). As a user runs it: no MALLOC_* variable
// (Deq.Native.FreedMemory applies itself; DEQ_MMAP_THRESHOLD=keep leaves glibc's heap as it is).
// From the repository root, after `dotnet build -c Release Deq.Experiments`:
//   dotnet fsi examples/solver-overhead.fsx
#r "../Deq.Experiments/bin/Release/net10.0/linux-x64/TorchSharp.dll"
#r "../Deq.Experiments/bin/Release/net10.0/linux-x64/Deq.Core.dll"
#r "../Deq.Experiments/bin/Release/net10.0/linux-x64/Deq.Experiments.dll"
open TorchSharp
open Deq.Experiments.Benchmarks
printfn "allocator: %s" Deq.Native.FreedMemory.Status
torch.set_num_threads 1
let result = BenchmarkSuite.SolverOverhead BenchmarkSuite.Settings.Full
for c in result.Costs do
    let perStep = (c.Seconds - c.FSeconds) / float c.Evaluations * 1e3
    printfn "%-9s overhead %.3f of f (solve %.1f ms, f %.2f ms a call, %.2f ms of bookkeeping a step)" c.Solver c.OverheadFraction (c.Seconds * 1e3) (c.FSeconds * 1e3 / float c.Evaluations) perStep
printfn "%s" (BenchmarkSuite.FactorFloor result.Floor)
