/// Tiny float64 DEQ models, tight solver options and small helpers shared by the model tests.
module Deq.Tests.Models.ModelFixtures

open System
open System.IO
open TorchSharp

open Deq.Solvers
open Deq.Implicit
open Deq.Models
open Deq.Tests.Support.Generators

/// The gradient of a parameter, failing the test when there is none.
let gradOf (p: Tensor) =
    match p.grad with
    | null -> failwith "no gradient reached the parameter"
    | g -> g

/// A value that must not be null.
let required (what: string) (x: 'a | null) : 'a =
    match x with
    | null -> failwith $"{what} is null"
    | v -> v

/// Finalises garbage now: TorchSharp leaves some tensors (e.g. optimizer and autograd internals) to finalizers,
/// which must not run later inside a test that counts live tensors.
let settle () =
    GC.Collect()
    GC.WaitForPendingFinalizers()
    GC.Collect()

/// Number of scalar parameters of a module.
let paramCount (m: torch.nn.Module) = m.parameters() |> Seq.sumBy (fun p -> p.numel())

/// Broyden at tight tolerances for both solves, with the given adjoint (an implicit one gets the tight solver too).
let tight (mode: Adjoint) =
    // Plain Broyden can leave its basin on these tiny models: the safeguard sends an element back to its best
    // iterate when its residual grows 10x; Anderson, then damped iteration, take over if Broyden still falls short.
    let solver () =
        Broyden.Create(SolverOptions(MaxIter = 100, Tol = 1e-11), BroydenOptions(Safeguard = 10.0))
            .OrElse(Anderson.Create(SolverOptions(MaxIter = 300, Tol = 1e-11)))
            .OrElse(ForwardIteration.Create(SolverOptions(MaxIter = 3000, Tol = 1e-11), 0.5))
    let adjoint = match mode with :? ImplicitAdjoint -> Adjoint.Implicit(solver ()) | other -> other
    EquilibriumOptions(Forward = solver (), Adjoint = adjoint)

/// The options plus a cell that receives the adjoint's report once backward has run.
let reporting = Deq.Tests.Support.DeqProblems.reporting

/// Tiny test configurations (F# cannot copy-and-update C# records, so overrides are optional arguments).
type Tiny =
    static member Transformer(?weightNorm, ?dModel, ?dHead, ?dInner, ?memLen, ?dropout, ?dropAtt, ?initStd) =
        DeqTransformerConfig(
            NToken = 20, DModel = defaultArg dModel 8, NHead = 2, DHead = defaultArg dHead 4, DInner = defaultArg dInner 16,
            SeqLen = 5, MemLen = defaultArg memLen 5, WeightNorm = defaultArg weightNorm false,
            Dropout = defaultArg dropout 0.0, DropAtt = defaultArg dropAtt 0.0,
            // ~1/sqrt(d_model): the paper's 0.05 at d_model ~ 400 (see DeqTransformerConfig.Tiny).
            InitStd = defaultArg initStd 0.3)

    static member Trellis(?kernel, ?weightNorm, ?width, ?dropoutH, ?weightDrop, ?dropoutI, ?embDropout) =
        let w = defaultArg width 6
        DeqTrellisNetConfig(
            NToken = 20, NInp = w, NHid = (if w = 6 then 4 else w), NOut = w, KernelSize = defaultArg kernel 2, SeqLen = 5,
            WeightNorm = defaultArg weightNorm true, DropoutH = defaultArg dropoutH 0.0, WeightDrop = defaultArg weightDrop 0.0,
            DropoutI = defaultArg dropoutI 0.0, EmbDropout = defaultArg embDropout 0.0)

let tinyTransformerConfig = Tiny.Transformer()
let tinyTrellisConfig = Tiny.Trellis()

/// A float64 DEQ-Transformer in eval mode (no dropout), from a fixed seed.
let transformer (seed: int) (config: DeqTransformerConfig) =
    torch.manual_seed(int64 seed) |> ignore
    let m = new DeqTransformerLM(config)
    m.``to``(ScalarType.Float64) |> ignore
    m.eval()
    m

/// A float64 DEQ-TrellisNet in eval mode, from a fixed seed.
let trellis (seed: int) (config: DeqTrellisNetConfig) =
    torch.manual_seed(int64 seed) |> ignore
    let m = new DeqTrellisNetLM(config)
    m.``to``(ScalarType.Float64) |> ignore
    m.eval()
    m

/// Random token ids [b, t] below n from a seed.
let tokens (seed: int) (b: int) (t: int) (n: int) =
    use g = generator seed
    torch.randint(0L, int64 n, [| int64 b; int64 t |], dtype = ScalarType.Int64, generator = g)

/// Random float64 tensor of a shape from a seed.
let randn (seed: int) (shape: int64[]) =
    use g = generator seed
    torch.randn(shape, dtype = ScalarType.Float64, generator = g)

/// Where the shared PTB data lives (may be absent).
let ptbTrain =
    // ../shared/data relative to the repository root: try the working directory and the folders above the test binary.
    let rec ancestors (dir: string) =
        seq {
            yield dir
            match Path.GetDirectoryName dir with
            | null -> ()
            | parent when parent <> dir -> yield! ancestors parent
            | _ -> ()
        }
    Seq.append [ Directory.GetCurrentDirectory() ] (ancestors AppContext.BaseDirectory)
    |> Seq.map (fun d -> Path.GetFullPath(Path.Combine(d, "..", "shared", "data", "ptb", "ptb.train.txt")))
    |> Seq.tryFind File.Exists

/// The first n PTB training tokens as ids of a vocabulary built from them (in order of appearance).
let ptbTokens (path: string) (n: int) =
    let words =
        File.ReadLines path
        |> Seq.collect (fun line -> Seq.append (line.Split(' ', StringSplitOptions.RemoveEmptyEntries)) [ "<eos>" ])
        |> Seq.truncate n
        |> Array.ofSeq
    let vocab = words |> Array.distinct |> Array.mapi (fun i w -> w, int64 i) |> dict
    words |> Array.map (fun w -> vocab[w]), vocab.Count

/// Positions 0..t (inclusive) along the time dimension 1.
let upTo (t: int) (x: Tensor) = x.narrow(1L, 0L, int64 (t + 1))

/// Positions t.. along the time dimension 1.
let from (t: int) (x: Tensor) = x.narrow(1L, int64 t, x.shape[1] - int64 t)
