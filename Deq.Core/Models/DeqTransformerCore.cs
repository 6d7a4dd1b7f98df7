using Deq.Layers;
using TorchSharp;
using static TorchSharp.torch;

namespace Deq.Models;

/// <summary>
/// The equilibrium part of a DEQ-Transformer: the input injection (a linear map of the embedded
/// tokens into q/k/v space, the reference's inject_conv) and the one layer f. Shared by the
/// language model and the copy-memory model.
/// </summary>
public sealed class DeqTransformerCore : nn.Module
{
    /// <summary>Embedded input -> injection added to q/k/v, d_model -> 3 n_head d_head.</summary>
    public readonly WeightNormLinear inject;
    /// <summary>f.</summary>
    public readonly DeqTransformerLayer func;

    /// <summary>The hyperparameters.</summary>
    public DeqTransformerConfig Config { get; }

    /// <summary>Builds the core; every parameter of f and the injection from N(0, InitStd).</summary>
    public DeqTransformerCore(DeqTransformerConfig config) : base(nameof(DeqTransformerCore))
    {
        Config = config.Validate();
        var c = Config;
        // The reference weight-normalises only f's maps, not inject_conv.
        inject = new WeightNormLinear(c.DModel, 3L * c.NHead * c.DHead, hasBias: true, weightNorm: false, c.InitStd);
        func = new DeqTransformerLayer(c.DModel, c.NHead, c.DHead, c.DInner, c.PreLayerNorm, c.WeightNorm, c.InitStd);
        RegisterComponents();
    }

    /// <summary>
    /// Binds f to a segment. <paramref name="embedded"/> [B, T, d_model] (dropout already applied);
    /// <paramref name="memory"/> from the previous segment or null. Dropout masks are sampled here,
    /// once, when the module is training.
    /// </summary>
    public TransformerCell Bind(Tensor embedded, TransformerMemory? memory)
    {
        var c = Config;
        if (embedded.dim() != 3 || embedded.shape[2] != c.DModel)
            throw new ArgumentException($"DEQ-Transformer expects embedded input [B, T, {c.DModel}]; got [{string.Join(", ", embedded.shape)}].", nameof(embedded));
        long b = embedded.shape[0], t = embedded.shape[1], w = 3L * c.NHead * c.DHead;
        var u = inject.Forward(embedded);
        Tensor memZ, memU;
        if (memory is null)
        {
            memZ = torch.zeros(b, 0, c.DModel, dtype: embedded.dtype, device: embedded.device);
            memU = torch.zeros(b, 0, w, dtype: embedded.dtype, device: embedded.device);
        }
        else
        {
            if (memory.Z.shape[0] != b || memory.Z.shape[2] != c.DModel || !memory.Injection.shape.SequenceEqual(new[] { b, memory.Length, w }))
                throw new ArgumentException($"Memory must be Z [{b}, M, {c.DModel}] and Injection [{b}, M, {w}]; got [{string.Join(", ", memory.Z.shape)}] and [{string.Join(", ", memory.Injection.shape)}].", nameof(memory));
            (memZ, memU) = (memory.Z.to(embedded.dtype, embedded.device), memory.Injection.to(embedded.dtype, embedded.device));
        }
        long k = memZ.shape[1] + t;
        bool tr = training;
        var positions = SinusoidalPositions.Relative(k, c.DModel, embedded.dtype, embedded.device);
        positions = VariationalDropout.Apply(positions, VariationalDropout.Mask([1, c.DModel], c.Dropout, tr, embedded));
        var masks = new TransformerMasks(
            VariationalDropout.Mask([b, 1, c.DModel], c.Dropout, tr, embedded),
            VariationalDropout.Mask([b, c.NHead, t, k], c.DropAtt, tr, embedded),
            VariationalDropout.Mask([b, 1, c.DInner], c.Dropout, tr, embedded),
            VariationalDropout.Mask([b, 1, c.DModel], c.Dropout, tr, embedded));
        return new TransformerCell(func, memZ, memU, u, positions, masks);
    }
}
