using Deq.Layers;
using TorchSharp;
using static TorchSharp.torch;

namespace Deq.Models;

/// <summary>
/// The equilibrium part of a DEQ-TrellisNet: the injection (a causal convolution of kernel k over the
/// embedded input, into the 4 gate pre-activations) and f's weight-shared causal convolution over h.
/// Together they are TrellisNet's convolution over [z; x], split into its x and z parts.
/// </summary>
public sealed class DeqTrellisNetCore : nn.Module
{
    /// <summary>x -> gate pre-activations, d_embed -> 4 h_size, kernel k.</summary>
    public readonly CausalConv1d inject_conv;
    /// <summary>f's convolution h -> gate pre-activations, h_size -> 4 h_size, kernel k.</summary>
    public readonly CausalConv1d full_conv;

    /// <summary>The hyperparameters.</summary>
    public DeqTrellisNetConfig Config { get; }

    /// <summary>Builds the core; parameters from N(0, InitStd), weight-normalised when configured (both convolutions, as in the reference).</summary>
    public DeqTrellisNetCore(DeqTrellisNetConfig config) : base(nameof(DeqTrellisNetCore))
    {
        Config = config.Validate();
        var c = Config;
        inject_conv = new CausalConv1d(c.NInp, 4L * c.HSize, c.KernelSize, c.WeightNorm, c.InitStd);
        full_conv = new CausalConv1d(c.HSize, 4L * c.HSize, c.KernelSize, c.WeightNorm, c.InitStd);
        RegisterComponents();
    }

    // Departure from the reference: it pads h with the last state repeated k-1 times and x with zeros at every
    // segment start; we carry the true last k-1 states and inputs, so consecutive segments compose exactly into
    // the equilibrium of their concatenation (identical for the paper's k = 2 as far as h is concerned).

    /// <summary>Positions of z carried across segments: k-1, but at least 1 (c needs its predecessor).</summary>
    public long CarriedStates => Math.Max(Config.KernelSize - 1, 1);

    /// <summary>
    /// Binds f to a segment. <paramref name="embedded"/> [B, T, d_embed] (dropout already applied);
    /// <paramref name="memory"/> from the previous segment or null (zeros). Masks are sampled here, once.
    /// </summary>
    public TrellisNetCell Bind(Tensor embedded, TrellisMemory? memory)
    {
        var c = Config;
        if (embedded.dim() != 3 || embedded.shape[2] != c.NInp)
            throw new ArgumentException($"DEQ-TrellisNet expects embedded input [B, T, {c.NInp}]; got [{string.Join(", ", embedded.shape)}].", nameof(embedded));
        long b = embedded.shape[0], k1 = c.KernelSize - 1;
        Tensor memZ, memX;
        if (memory is null)
        {
            memZ = torch.zeros(b, CarriedStates, 2L * c.HSize, dtype: embedded.dtype, device: embedded.device);
            memX = torch.zeros(b, k1, c.NInp, dtype: embedded.dtype, device: embedded.device);
        }
        else
        {
            if (!memory.Z.shape.SequenceEqual(new[] { b, CarriedStates, 2L * c.HSize }) || !memory.X.shape.SequenceEqual(new[] { b, k1, (long)c.NInp }))
                throw new ArgumentException($"TrellisMemory must be Z [{b}, {CarriedStates}, {2 * c.HSize}] and X [{b}, {k1}, {c.NInp}]; got [{string.Join(", ", memory.Z.shape)}] and [{string.Join(", ", memory.X.shape)}].", nameof(memory));
            (memZ, memX) = (memory.Z.to(embedded.dtype, embedded.device), memory.X.to(embedded.dtype, embedded.device));
        }
        bool tr = training;
        var injectDrop = VariationalDropout.Mask(inject_conv.weight.shape, c.WeightDrop, tr, embedded);
        var convDrop = VariationalDropout.Mask(full_conv.weight.shape, c.WeightDrop, tr, embedded);
        var injection = inject_conv.Forward(embedded, memX, injectDrop is null ? null : inject_conv.Weight(injectDrop));
        var hiddenMask = VariationalDropout.Mask([b, 1, c.HSize], c.DropoutH, tr, embedded);
        return new TrellisNetCell(full_conv, convDrop, embedded, injection, memZ, memX, hiddenMask, c.HSize);
    }

    /// <summary>The output units of z: h's last NOut channels, [B, T, NOut].</summary>
    public Tensor Output(Tensor z) => z.narrow(2, Config.NHid, Config.NOut);
}
