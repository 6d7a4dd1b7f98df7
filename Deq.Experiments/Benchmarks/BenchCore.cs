using Deq.Models;
using TorchSharp;
using static TorchSharp.torch;

namespace Deq.Experiments.Benchmarks;

/// <summary>
/// An equilibrium core with a fixed random embedded input, for benchmarks: the embedding and the
/// softmax are left out, as in the paper's memory figures. <see cref="Bind"/> computes the injection
/// (part of the measured step) and returns f and z0.
/// </summary>
public sealed class BenchCore : IDisposable
{
    readonly DeqTrellisNetCore? _trellis;
    readonly DeqTransformerCore? _transformer;

    BenchCore(nn.Module module, DeqTrellisNetCore? trellis, DeqTransformerCore? transformer, Tensor input, long stateChannels)
    {
        (Module, _trellis, _transformer, Input, StateChannels) = (module, trellis, transformer, input, stateChannels);
    }

    /// <summary>The core's parameters live here.</summary>
    public nn.Module Module { get; }
    /// <summary>The embedded input [B, T, d_embed], no gradient.</summary>
    public Tensor Input { get; }
    /// <summary>Channels of z: 2 h_size (TrellisNet's [h; c]) or d_model.</summary>
    public long StateChannels { get; }

    /// <summary>Bytes of one state z.</summary>
    public long StateBytes => Input.shape[0] * Input.shape[1] * StateChannels * Input.element_size();

    /// <summary>Parameter count.</summary>
    public long Parameters => Module.parameters().Sum(p => p.numel());

    /// <summary>Builds a core (seeded), on <paramref name="device"/>, float32, no dropout.</summary>
    public static BenchCore Create(CoreFamily family, int width, int seqLen, int batch, Device device, int seed = 0)
    {
        torch.manual_seed(seed);
        if (family == CoreFamily.TrellisNet)
        {
            int nOut = Math.Max(1, (int)Math.Round(width * 2.0 / 7.0));
            var config = new DeqTrellisNetConfig(NInp: nOut, NHid: width - nOut, NOut: nOut, SeqLen: seqLen);
            var core = new DeqTrellisNetCore(config);
            core.to(device);
            var x = torch.randn(batch, seqLen, nOut, device: device);
            return new BenchCore(core, core, null, x, 2L * config.HSize);
        }
        else
        {
            int heads = width % 64 == 0 ? width / 64 : width % 4 == 0 ? 4 : 2;
            // InitStd scaled like the Tiny preset: 0.05 at d_model 410, 0.05 sqrt(410 / d) below it.
            var config = new DeqTransformerConfig(DModel: width, NHead: heads, DHead: width / heads, DInner: 4 * width,
                SeqLen: seqLen, MemLen: 0, InitStd: 0.05 * Math.Sqrt(Math.Max(1.0, 410.0 / width)));
            var core = new DeqTransformerCore(config);
            core.to(device);
            var x = torch.randn(batch, seqLen, width, device: device);
            return new BenchCore(core, null, core, x, width);
        }
    }

    /// <summary>Binds f to the input: the injection is computed here (on the autograd tape when grad is on).</summary>
    public BoundCore Bind()
    {
        if (_trellis is not null)
        {
            var cell = _trellis.Bind(Input, null);
            return new BoundCore(cell.F, cell.Z0, cell.Release);
        }
        var t = _transformer!.Bind(Input, null);
        return new BoundCore(t.F, t.Z0, t.Release);
    }

    /// <summary>Releases the module and the input.</summary>
    public void Dispose()
    {
        Input.Dispose();
        Module.Dispose();
    }
}

/// <summary>f bound to the benchmark input, and its initial guess.</summary>
/// <param name="F">z -> f(z; x).</param>
/// <param name="Z0">Zeros shaped like z.</param>
/// <param name="Release">Frees the injection once the equilibrium is solved, as the models do (f cannot be called after it); null when there is nothing to free.</param>
public sealed record BoundCore(Func<Tensor, Tensor> F, Tensor Z0, Action? Release = null)
{
    /// <summary>Calls <see cref="Release"/> if there is one.</summary>
    public void ReleaseInjection() => Release?.Invoke();
}
