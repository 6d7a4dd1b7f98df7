using static TorchSharp.torch;

namespace Deq.Layers;

/// <summary>For f's layers, which free each large temporary as soon as the next one exists (see the attention).</summary>
internal static class Temporaries
{
    /// <summary><paramref name="next"/>, having freed <paramref name="old"/> (a temporary of the caller's that next replaces).</summary>
    public static Tensor Replace(Tensor old, Tensor next)
    {
        if (!ReferenceEquals(old, next)) old.Dispose();
        return next;
    }
}
