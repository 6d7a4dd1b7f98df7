using static TorchSharp.torch;

namespace Deq.Models;

/// <summary>
/// Transformer-XL memory of a DEQ-Transformer: the equilibrium states of past positions and their
/// input injections (keys and values of memory positions need both), detached from autograd.
/// </summary>
/// <param name="Z">Past equilibrium states, [B, M, d_model].</param>
/// <param name="Injection">Their input injections, [B, M, 3 n_head d_head].</param>
public sealed record TransformerMemory(Tensor Z, Tensor Injection)
{
    /// <summary>Number of remembered positions M.</summary>
    public long Length => Z.shape[1];
}
