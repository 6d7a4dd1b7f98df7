using Deq.Layers;
using Deq.Solvers;
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
    readonly long[] _zShape;
    bool _released;

    internal TransformerCell(DeqTransformerLayer layer, Tensor memoryZ, Tensor memoryInjection, Tensor injection, Tensor positions, TransformerMasks masks)
    {
        _layer = layer;
        MemoryZ = memoryZ;
        MemoryInjection = memoryInjection;
        Positions = positions;
        Masks = masks;
        long m = memoryZ.shape[1];
        AllInjection = m == 0 ? injection : torch.cat([memoryInjection, injection], 1);
        // With memory, this segment's injection is a view of the concatenation, so it is held once, not twice.
        _zShape = [injection.shape[0], injection.shape[1], memoryZ.shape[2]];
        Injection = m == 0 ? injection : AllInjection.narrow(1, m, injection.shape[1]);
        if (m > 0) injection.Dispose();
        F = z => _released
            ? throw new InvalidOperationException("TransformerCell: f was called after Release(), which freed its injection; release the cell only once f is no longer needed (after the solve, NextMemory and every adjoint that calls f).")
            : _layer.Forward(z, MemoryZ, AllInjection, Positions, Masks);
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
    /// <summary>The initial guess: zeros [B, T, d] that hold no memory (<see cref="InitialGuess.Zeros"/>).</summary>
    public Tensor Z0 => InitialGuess.Zeros(_zShape, MemoryZ.dtype, MemoryZ.device);

    /// <summary>
    /// Frees the injections (three copies of z for this segment, more with memory) once the equilibrium is solved
    /// and <see cref="NextMemory"/> taken: the graph of f at z* does not need them, so backward runs without them.
    /// f cannot be called afterwards, so an adjoint that calls f during backward (none of the shipped ones does)
    /// must not be combined with it.
    /// </summary>
    public void Release()
    {
        _released = true;
        Injection.Dispose();
        AllInjection.Dispose();
    }

    /// <summary>
    /// The memory for the next segment: the last <paramref name="memLen"/> positions of [memory; z*]
    /// and of the injections, detached (empty when memLen is 0).
    /// </summary>
    public TransformerMemory NextMemory(Tensor zStar, long memLen)
    {
        if (_released) throw new InvalidOperationException("TransformerCell: NextMemory was called after Release(), which freed the injections it keeps; take the memory first.");
        using var _ = torch.no_grad();
        var z = MemoryZ.shape[1] == 0 ? zStar.detach() : torch.cat([MemoryZ, zStar.detach()], 1);
        var u = AllInjection.detach();
        long keep = Math.Clamp(memLen, 0, z.shape[1]);
        return new TransformerMemory(z.narrow(1, z.shape[1] - keep, keep).contiguous(), u.narrow(1, u.shape[1] - keep, keep).contiguous());
    }
}
