using TorchSharp;
using static TorchSharp.torch;

namespace Deq.Solvers;

/// <summary>Initial guesses z0 that cost no memory.</summary>
public static class InitialGuess
{
    /// <summary>
    /// Zeros of <paramref name="shape"/> as a broadcast view of a single zero. A zeros tensor would hold one
    /// copy of z for the whole solve and backward, since the caller keeps z0; solvers only read z0, so this
    /// one costs nothing. Treat it as read-only: libtorch refuses elementwise in-place writes into a broadcast.
    /// </summary>
    public static Tensor Zeros(long[] shape, ScalarType dtype, Device device)
    {
        using var one = torch.zeros(Enumerable.Repeat(1L, Math.Max(shape.Length, 1)).ToArray(), dtype: dtype, device: device);
        return one.expand(shape);
    }

    /// <summary><see cref="Zeros(long[], ScalarType, Device)"/> shaped like <paramref name="like"/>.</summary>
    public static Tensor ZerosLike(Tensor like) => Zeros(like.shape, like.dtype, like.device);
}
