/// Iterates in recycled memory (RecycledBlocks): a block comes back only when libtorch frees the last tensor on it, so
/// recycling changes no value anyone holds, and nothing outlives the solve.
module Deq.Tests.Solvers.RecycledIterateTests

open System
open Expecto
open TorchSharp

open Deq.Solvers
open Deq.FSharp
open Deq.Tests.Support.Generators

// Rows wide enough that a [batch, width] tensor is at or above the mmap threshold (128 KiB in float32 and float64).
let private batch, width = 2L, 16384L

// A contraction that is cheap at this width: f(z) = tanh(0.6 roll(z) + 0.3 z + c), the same c for every dtype.
let private map (dtype: ScalarType) =
    use g = new torch.Generator(11UL)
    let c = torch.randn([| batch; width |], dtype = ScalarType.Float64, generator = g).``to``(dtype).DetachFromDisposeScope()
    fun (z: Tensor) -> torch.tanh(0.6 * torch.roll(z, 1L, 1L) + 0.3 * z + c)

// A map on which Broyden's residual rises on some steps (so the ledger's best stays behind the current iterate).
let private rough (dtype: ScalarType) =
    use g = new torch.Generator(12UL)
    let c = torch.randn([| batch; width |], dtype = ScalarType.Float64, generator = g).``to``(dtype).DetachFromDisposeScope()
    fun (z: Tensor) -> torch.tanh(1.4 * torch.roll(z, 1L, 1L) - 0.9 * z + c)

let private withBlocks (on: bool) (solve: Solver) f (z0: Tensor) =
    RecycledBlocks.Off <- Nullable(not on)
    try Solver.run solve f z0
    finally RecycledBlocks.Off <- Nullable()

let private solvers () =
    let o = SolverOptions(Tol = 1e-30, MaxIter = 14)
    [ "broyden", Broyden.Create(o, BroydenOptions(Memory = 5))
      "broyden, the ring wraps", Broyden.Create(o, BroydenOptions(Memory = 3))
      "broyden, safeguard", Broyden.Create(o, BroydenOptions(Memory = 4, Safeguard = 2.0)) ]

[<Tests>]
let recycled =
    testList "recycled iterates" [
        test "this TorchSharp can wrap memory without a copy, so solves recycle iterates where fresh ones are new pages" {
            Expect.isTrue RecycledBlocks.Available "TorchSharp's no-copy factory was found (an upgrade that drops it must be noticed)"
            match Deq.Native.FreedMemory.ThresholdBytes |> Option.ofNullable with
            | Some threshold ->
                Expect.isNotNull (RecycledBlocks.For(ScalarType.Float32, torch.CPU, batch, width)) $"[{batch}, {width}] float32 at threshold {threshold}"
                Expect.isNull (RecycledBlocks.For(ScalarType.Float32, torch.CPU, 64L, 128L)) "the toy's 32 KiB: the heap's fresh memory is cheap"
                Expect.isNull (RecycledBlocks.For(ScalarType.Float16, torch.CPU, batch, width)) "float16"
            | None -> Expect.isNull (RecycledBlocks.For(ScalarType.Float32, torch.CPU, batch, width)) "no mmap threshold: fresh memory is the heap's"
        }

        test "a block comes back only when the last tensor on it goes, a held alias keeps its values, and one block at most waits idle" {
            use scope = torch.NewDisposeScope()
            use pool = RecycledBlocks.For(ScalarType.Float64, torch.CPU, batch, width) |> Option.ofObj |> Option.get
            let live0 = RecycledBlocks.LiveBlocks
            let firstEntry (t: Tensor) =
                use _ = torch.NewDisposeScope()   // the view would hold the block
                t.narrow(1L, 0L, 1L).sum().item<float>()
            let a = pool.Take()
            a.fill_(7.0) |> ignore
            let alias = a.narrow(1L, 0L, 4L).DetachFromDisposeScope()
            a.Dispose()
            let b = pool.Take()
            b.fill_(1.0) |> ignore
            Expect.equal (firstEntry alias * 4.0) (7.0 * 4.0 * float batch) "the alias's block was not handed out again"
            b.Dispose()
            // Taken memory is uninitialised, so a recycled block still shows its old values.
            let c = pool.Take()
            Expect.equal (firstEntry c) (1.0 * float batch) "b's block came back"
            alias.Dispose()
            let d = pool.Take()
            Expect.equal (firstEntry d) (7.0 * float batch) "a's block came back once its alias went"
            Expect.equal (RecycledBlocks.LiveBlocks - live0) 2 "two blocks in all"
            c.Dispose()
            d.Dispose()
            Expect.equal (RecycledBlocks.LiveBlocks - live0) 1 "one waits idle, the other was freed"
        }

        test "Broyden takes the same steps to the bit with recycled iterates as with fresh ones, with no block idle while f runs (float64 and float32, a rising residual too; ring wrap, safeguard)" {
            use scope = torch.NewDisposeScope()
            let mutable compared = 0
            for dtype in [ ScalarType.Float64; ScalarType.Float32 ] do
                for mapName, f in [ "contraction", map dtype; "rising residual", rough dtype ] do
                    for name, solve in solvers () do
                        let z0 = torch.zeros([| batch; width |], dtype = dtype)
                        let mutable idleInF = 0
                        let watched (z: Tensor) =
                            idleInF <- max idleInF RecycledBlocks.IdleBlocks
                            f z
                        let fresh, recycled = withBlocks false solve f z0, withBlocks true solve watched z0
                        let what = $"{name}, {mapName}, {dtype}"
                        Expect.equal idleInF 0 $"{what}: no block waited idle while f ran"
                        Expect.equal recycled.StepsPerElement fresh.StepsPerElement what
                        Expect.equal recycled.BestStepPerElement fresh.BestStepPerElement what
                        Expect.equal recycled.AbsTracePerElement fresh.AbsTracePerElement $"{what}: the residual traces"
                        Expect.equal (bits recycled.Value) (bits fresh.Value) $"{what}: the best iterate, bit for bit"
                        compared <- compared + 1
            Expect.equal compared 12 "every case ran both ways"
        }

        test "an observer that keeps every iterate sees each one unchanged at the end, and no block outlives the solve" {
            use scope = torch.NewDisposeScope()
            let before = RecycledBlocks.LiveBlocks
            for name, solve in solvers () do
                let kept = Collections.Generic.List<Tensor * Tensor>()
                let keep (s: SolverStep) = kept.Add((s.Z.alias().DetachFromDisposeScope(), s.Z.clone().DetachFromDisposeScope()))
                let r = withBlocks true (solve |> Solver.observed keep) (rough ScalarType.Float64) (torch.zeros([| batch; width |], dtype = ScalarType.Float64))
                Expect.isGreaterThan kept.Count 10 name
                for i, (held, copy) in Seq.indexed kept do
                    use _ = torch.NewDisposeScope()   // bits' handles on the held storage go here
                    Expect.equal (bits held) (bits copy) $"{name}: step {i + 1}'s iterate, held through the solve"
                for held, copy in kept do
                    held.Dispose()
                    copy.Dispose()
                r.Value.Dispose()
            Expect.equal RecycledBlocks.LiveBlocks before "every block was freed once its tensors and the solve were"
        }
    
        test "a user's step writes into NewIterate, and a step that frees its iterate before f leaves no block idle while f runs" {
            use scope = torch.NewDisposeScope()
            // f(z) = c - 3 z: the half-step then cycles between 0 and c / 2 at one residual, so no step improves and the
            // ledger holds no iterate; each freed iterate's block comes back at once, before f runs.
            let c = torch.ones([| batch; width |], dtype = ScalarType.Float64)
            let f0 (z: Tensor) = c - 3.0 * z
            let mutable idleInF, calls = 0, 0
            let f (z: Tensor) =
                idleInF <- max idleInF RecycledBlocks.IdleBlocks
                calls <- calls + 1
                f0 z
            // z_next = (z + f(z)) / 2, written into NewIterate; the current iterate goes before f (Evaluate(z, done)).
            let half =
                SolverMethod.Create("half-step", (fun (ctx: SolveContext) (it: Iterate) ->
                    let z = ctx.NewIterate()
                    z.copy_(it.Z).add_(it.Fz).mul_((0.5).ToScalar()) |> ignore
                    Iterate(z, ctx.Evaluate(z, it))), SolverOptions(Tol = 1e-30, MaxIter = 12))
            let before = RecycledBlocks.LiveBlocks
            Expect.equal RecycledBlocks.IdleBlocks 0 "no pool is open"
            let r = withBlocks true half f (torch.zeros([| batch; width |], dtype = ScalarType.Float64))
            let reference = withBlocks false half f0 (torch.zeros([| batch; width |], dtype = ScalarType.Float64))
            Expect.equal (bits r.Value) (bits reference.Value) "the same iterates with fresh memory"
            Expect.equal calls 12 "f ran at every step"
            Expect.equal idleInF 0 "no block waited idle while f ran"
            r.Value.Dispose()
            Expect.equal RecycledBlocks.LiveBlocks before "and none outlives the solve"
        }
    ]
