using static TorchSharp.torch;

namespace Deq.Models;

/// <summary>
/// What a DEQ-TrellisNet carries across segments: the last states z* = [h; c] (k-1 of them, at least one,
/// since c needs its predecessor) and the last k-1 embedded inputs (the injection convolution's left context).
/// Detached from autograd.
/// </summary>
/// <param name="Z">Past equilibrium states [B, max(k-1, 1), 2 h_size].</param>
/// <param name="X">Past embedded inputs [B, k-1, d_embed].</param>
public sealed record TrellisMemory(Tensor Z, Tensor X);
