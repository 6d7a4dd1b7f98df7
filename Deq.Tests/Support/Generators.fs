/// Random small problems in float64, reproducible from a seed that FsCheck generates.
module Deq.Tests.Support.Generators

open FsCheck
open FsCheck.FSharp
open TorchSharp

type Tensor = torch.Tensor
type Generator = torch.Generator
type ScalarType = torch.ScalarType


/// FsCheck settings for every property: a fixed replay seed keeps runs identical.
let fsConfig maxTest =
    { Expecto.FsCheckConfig.defaultConfig with maxTest = maxTest; replay = Some(20191208UL, 9UL, None) }

/// A generator of its own, so tests never depend on torch's global RNG state.
let generator (seed: int) = new Generator(uint64 seed, torch.CPU)

/// A random n x n matrix scaled to spectral norm rho (< 1 makes z -> A z + b a contraction).
let contractive (g: Generator) (n: int) (rho: float) =
    let a = torch.randn([| int64 n; int64 n |], dtype = ScalarType.Float64, generator = g)
    let s = torch.linalg.svdvals(a).max().item<float>()
    a * (rho / s)

/// A linear contraction z -> z A^T + b over a batch, and its exact fixed point.
type LinearProblem =
    { Seed: int; N: int; Batch: int; Rho: float }
    /// On the test device (TestDevice); drawn on the CPU, so every device gets the same problem.
    member p.Build() = p.BuildOn(TestDevice.device ())
    member p.BuildOn(device: torch.Device) =
        use g = generator p.Seed
        let a = contractive g p.N p.Rho
        let b = torch.randn([| int64 p.Batch; int64 p.N |], dtype = ScalarType.Float64, generator = g)
        let eye = torch.eye(int64 p.N, dtype = ScalarType.Float64)
        let exact = torch.linalg.solve(eye - a, b.T).T
        let a, b, exact = a.``to`` device, b.``to`` device, exact.``to`` device
        let f (z: Tensor) = torch.matmul(z, a.T) + b
        a, b, f, exact

/// tanh(W z + U x + c) with ||W||_2 = Rho: a contraction since tanh is 1-Lipschitz.
type TanhProblem =
    { Seed: int; N: int; Batch: int; Rho: float }
    /// On the test device (TestDevice); drawn on the CPU, so every device gets the same problem.
    member p.Build() = p.BuildOn(TestDevice.device ())
    member p.BuildOn(device: torch.Device) =
        use g = generator p.Seed
        let w = contractive g p.N p.Rho
        let u = torch.randn([| int64 p.N; int64 p.N |], dtype = ScalarType.Float64, generator = g)
        let c = torch.randn([| int64 p.N |], dtype = ScalarType.Float64, generator = g)
        let x = torch.randn([| int64 p.Batch; int64 p.N |], dtype = ScalarType.Float64, generator = g)
        let w, u, c, x = w.``to`` device, u.``to`` device, c.``to`` device, x.``to`` device
        let injection = torch.matmul(x, u.T) + c
        let f (z: Tensor) = torch.tanh(torch.matmul(z, w.T) + injection)
        w, f

/// Three tanh problems (seed 7, n 6, rho 0.8): the clean map, and the same with batch element 1 replaced by `bad`.
let withElementOne (bad: Tensor -> Tensor) =
    let _, f = { TanhProblem.Seed = 7; N = 6; Batch = 3; Rho = 0.8 }.Build()
    let mask = torch.tensor([| false; true; false |]).reshape(3L, 1L)
    f, (fun (z: Tensor) -> torch.where(mask, bad z, f z))

/// `withElementOne`'s map where element 1 contracts (0.5 z + 1) until its L1 norm passes 2, then turns NaN.
let elementOneTurnsNaN () =
    snd (withElementOne (fun z -> torch.where(z.abs().sum(1L, true).gt((2.0).ToScalar()), z * System.Double.NaN, 0.5 * z + 1.0)))

let private sizes rhoLo rhoHi =
    gen {
        let! seed = Gen.choose (0, 1_000_000)
        let! n = Gen.choose (2, 12)
        let! batch = Gen.choose (1, 4)
        let! rhoPercent = Gen.choose (int (rhoLo * 100.), int (rhoHi * 100.))
        return seed, n, batch, float rhoPercent / 100.
    }

let linearProblems rhoLo rhoHi =
    sizes rhoLo rhoHi
    |> Gen.map (fun (s, n, b, r) -> { LinearProblem.Seed = s; N = n; Batch = b; Rho = r })
    |> Arb.fromGen

let tanhProblems rhoLo rhoHi =
    sizes rhoLo rhoHi
    |> Gen.map (fun (s, n, b, r) -> { TanhProblem.Seed = s; N = n; Batch = b; Rho = r })
    |> Arb.fromGen

/// A tensor's entries as the bits of their float64 values, for comparisons to the bit (NaN included).
let bits (t: Tensor) =
    t.``to``(ScalarType.Float64).data<float>().ToArray() |> Array.map System.BitConverter.DoubleToInt64Bits

/// The largest element of |a - b| (float32 or float64), as a float.
let maxAbsDiff (a: Tensor) (b: Tensor) = (a - b).abs().max().``to``(ScalarType.Float64).item<float>()

/// f with its output as a strided view (the same values) on every fifth call: a user's f may return one, and the
/// solvers' C# steps read rows.
let aViewEveryFifth (f: Tensor -> Tensor) =
    let mutable calls = 0
    fun (z: Tensor) ->
        calls <- calls + 1
        let y = f z
        if calls % 5 = 0 then y.t().contiguous().t() else y
