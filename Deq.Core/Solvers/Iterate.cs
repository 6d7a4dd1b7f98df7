using static TorchSharp.torch;

namespace Deq.Solvers;

/// <summary>
/// An iterate z and f(z), both flat [batch, width] (width = the entries of one batch element).
/// Step functions receive the current one and return the next; the tensors they return must be new
/// (not views of their state), since the driver owns and frees them.
/// </summary>
/// <param name="Z">The iterate.</param>
/// <param name="Fz">f at the iterate.</param>
public readonly record struct Iterate(Tensor Z, Tensor Fz)
{
    /// <summary>
    /// f(z) - z, when the step computed it anyway (the driver's bookkeeping then uses it instead of forming it
    /// again). It may be a view of the solver's state; the driver only reads it, and drops it once the step is recorded.
    /// </summary>
    public Tensor? Residual { get; init; }
}
