using Deq.Implicit;
using static TorchSharp.torch;

namespace Deq.Models;

/// <summary>What a DEQ language model's forward pass returns.</summary>
/// <param name="Hidden">The (dropped-out) equilibrium features fed to the softmax, [B, T, d].</param>
/// <param name="Memory">State to pass to the next segment (detached; a Transformer with mem_len 0 returns an empty memory).</param>
/// <param name="Equilibrium">z* and the solver statistics (forward now, backward once backward has run).</param>
public sealed record LmOutput<TMemory>(Tensor Hidden, TMemory Memory, EquilibriumResult Equilibrium) where TMemory : class;
