using TorchSharp;
using static TorchSharp.torch;

namespace Deq.Layers;

/// <summary>Layer normalisation helpers.</summary>
public static class LayerNorms
{
    /// <summary>
    /// Layer norm over the last dimension without a learned gain or bias: the DEQ-Transformer
    /// reference normalises this way (F.layer_norm with no affine parameters) inside f.
    /// </summary>
    public static Tensor Plain(Tensor x, double eps = 1e-5) => nn.functional.layer_norm(x, [x.shape[^1]], eps: eps);
}
