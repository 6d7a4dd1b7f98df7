using Deq.Layers;
using TorchSharp;
using static TorchSharp.torch;

namespace Deq.Models;

/// <summary>
/// f of a DEQ-Transformer bound to one segment: its input injection, memory, relative positions and
/// dropout masks are fixed, so <see cref="F"/> is one function z -> f(z; x) for the solver.
/// </summary>
public sealed class TransformerCell
{
    readonly DeqTransformerLayer _layer;

    internal TransformerCell(DeqTransformerLayer layer, Tensor memoryZ, Tensor memoryInjection, Tensor injection, Tensor positions, TransformerMasks masks)
    {
        _layer = layer;
        MemoryZ = memoryZ;
        MemoryInjection = memoryInjection;
        Injection = injection;
        Positions = positions;
        Masks = masks;
        AllInjection = memoryZ.shape[1] == 0 ? injection : torch.cat([memoryInjection, injection], 1);
        F = z => _layer.Forward(z, MemoryZ, AllInjection, Positions, Masks);
    }

    /// <summary>Memory states [B, M, d].</summary>
    public Tensor MemoryZ { get; }
    /// <summary>Memory injections [B, M, 3 H dh].</summary>
    public Tensor MemoryInjection { get; }
    /// <summary>This segment's injection [B, T, 3 H dh].</summary>
    public Tensor Injection { get; }
    /// <summary>[memory; segment] injections [B, M+T, 3 H dh].</summary>
    public Tensor AllInjection { get; }
    /// <summary>Relative position embeddings [M+T, d] (dropout applied).</summary>
    public Tensor Positions { get; }
    /// <summary>The fixed dropout masks.</summary>
    public TransformerMasks Masks { get; }
    /// <summary>z -> f(z; x), z shaped [B, T, d].</summary>
    public Func<Tensor, Tensor> F { get; }
    /// <summary>The initial guess: zeros [B, T, d].</summary>
    public Tensor Z0 => torch.zeros(Injection.shape[0], Injection.shape[1], MemoryZ.shape[2], dtype: Injection.dtype, device: Injection.device);

    /// <summary>
    /// The memory for the next segment: the last <paramref name="memLen"/> positions of [memory; z*]
    /// and of the injections, detached (empty when memLen is 0).
    /// </summary>
    public TransformerMemory NextMemory(Tensor zStar, long memLen)
    {
        using var _ = torch.no_grad();
        var z = MemoryZ.shape[1] == 0 ? zStar.detach() : torch.cat([MemoryZ, zStar.detach()], 1);
        var u = AllInjection.detach();
        long keep = Math.Clamp(memLen, 0, z.shape[1]);
        return new TransformerMemory(z.narrow(1, z.shape[1] - keep, keep).contiguous(), u.narrow(1, u.shape[1] - keep, keep).contiguous());
    }
}
