module Deq.Tests.Models.GradientTests

open Expecto
open TorchSharp

open Deq.Implicit
open Deq.Models
open Deq.Tests.Support.Generators
open Deq.Tests.Models.ModelFixtures

/// Gradient of `loss` w.r.t. p under a gradient mode, and the equilibrium result.
let private gradient (m: torch.nn.Module) (p: Tensor) (loss: EquilibriumOptions -> Tensor * EquilibriumResult) mode =
    m.zero_grad()
    let options, report = reporting (tight mode)
    let l, eq = loss options
    Equilibrium.Backward l
    (gradOf p).detach().clone(), eq, report.Value

/// Implicit gradient vs unrolled iteration vs a central finite difference along a random direction.
let private check (m: torch.nn.Module) (named: (string * Tensor) list) (loss: EquilibriumOptions -> Tensor * EquilibriumResult) =
    for name, p in named do
        use scope = torch.NewDisposeScope()
        let watch = System.Diagnostics.Stopwatch.StartNew()
        let gi, eq, report = gradient m p loss (Adjoint.Implicit())
        Expect.isTrue eq.Forward.Converged $"{name}: forward {eq.Forward}"
        Expect.isTrue (Option.get report).Result.Converged $"{name}: the adjoint solve converged"
        let gu, _, _ = gradient m p loss (Adjoint.Unrolled 120)
        let rel = (gi - gu).norm().item<float>() / gu.norm().item<float>()
        Expect.isLessThan rel 1e-5 $"{name}: implicit vs unrolled, relative error {rel:E2}"
        let d = randn 99 p.shape
        let eps = 1e-4
        let at (s: float) =
            use _ = torch.no_grad()
            p.add_(d * s) |> ignore
            let l = (fst (loss (tight (Adjoint.Implicit())))).item<float>()
            p.add_(d * -s) |> ignore
            l
        let fd = (at eps - at -eps) / (2. * eps)
        let analytic = (gi * d).sum().item<float>()
        // Relative to |fd|, or to ||g|| ||d|| when the directional derivative is nearly orthogonal (FD noise ~1e-11).
        let scale = max (abs fd) (1e-3 * gi.norm().item<float>() * d.norm().item<float>())
        let relFd = abs (fd - analytic) / scale
        Expect.isLessThan relFd 1e-5 $"{name}: implicit vs finite difference ({analytic} vs {fd}), relative error {relFd:E2}"
        settle ()
        printfn $"{name}: {watch.ElapsedMilliseconds} ms, unrolled rel {rel:E1}, fd rel {relFd:E1}, forward {eq.Forward.Steps} steps"

[<Tests>]
let gradients =
    testList "implicit gradients of the DEQ models (float64)" [
        test "DEQ-Transformer: implicit = unrolled = finite differences" {
            use scope = torch.NewDisposeScope()
            use m = transformer 21 (Tiny.Transformer(weightNorm = true))
            let x, y = tokens 22 2 4 20, tokens 23 2 4 20
            let memory = m.Forward(tokens 24 2 3 20, null, tight (Adjoint.Implicit())).Memory
            let loss (o: EquilibriumOptions) =
                let out = m.Forward(x, memory, o)
                m.Loss(out.Hidden, y), out.Equilibrium
            check m [ "qkv direction", m.core.func.dec_attn.qkv_net.weight
                      "ff1 gain", required "weight_g" m.core.func.pos_ff.ff1_net.weight_g
                      "u bias", m.core.func.dec_attn.r_w_bias
                      "injection", m.core.inject.weight
                      "embedding", m.word_emb.emb_layers[0] ] loss
        }

        test "DEQ-TrellisNet: implicit = unrolled = finite differences" {
            use scope = torch.NewDisposeScope()
            use m = trellis 31 (Tiny.Trellis(kernel = 3))
            let x, y = tokens 32 2 4 20, tokens 33 2 4 20
            let memory = m.Forward(tokens 34 2 3 20, null, tight (Adjoint.Implicit())).Memory
            let loss (o: EquilibriumOptions) =
                let out = m.Forward(x, memory, o)
                m.Loss(out.Hidden, y), out.Equilibrium
            check m [ "conv direction", m.trellisnet.full_conv.weight
                      "conv gain", required "weight_g" m.trellisnet.full_conv.weight_g
                      "conv bias", m.trellisnet.full_conv.bias
                      "injection", m.trellisnet.inject_conv.weight ] loss
        }
    ]
