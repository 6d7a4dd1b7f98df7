using TorchSharp;
using static TorchSharp.torch;

namespace Deq.Implicit;

/// <summary>
/// A hand-written vector-Jacobian product in z that f offers for the adjoint's linear solve, in place of autograd's.
/// While <see cref="Adjoint.Implicit(LinearSolver?)"/> builds its one graph of f at z*, f may offer
/// g -> (df/dz)^T g formed from values that graph saves (f is not applied again): <see cref="Offer"/> names them, the
/// adjoint's node keeps them as saved tensors, and backward builds the product from them. Autograd still gives the
/// gradients of f's parameters and inputs. Worth it where autograd's backward of f holds more than the product
/// needs (the DEQ-TrellisNet's: libtorch's convolution backward holds the whole gate gradient and a reordered copy).
/// </summary>
public static class VectorJacobian
{
    [ThreadStatic] static Stack<Capture>? _open;

    /// <summary>
    /// Whether an adjoint is building its graph of f at z* on this thread and takes an offer: f checks this before
    /// keeping handles for one. Gradients of f's parameters come from the graph either way.
    /// </summary>
    public static bool Wanted => _open is { Count: > 0 } open && !Declined && open.Peek().Offers.Count == 0;

    /// <summary>
    /// Offers the product for <paramref name="output"/>, the tensor f returns. <paramref name="saved"/>: the tensors
    /// the product reads (handles of f's own, which this takes; the adjoint keeps them as saved tensors until its
    /// backward is done). <paramref name="product"/> gets them back in backward, in the same order, and returns
    /// g -> (df/dz)^T g for g shaped like <paramref name="output"/>; it runs with gradients off.
    /// An offer for another tensor than the one f returns (a nested f's) is dropped.
    /// </summary>
    public static void Offer(Tensor output, IReadOnlyList<Tensor> saved, Func<IReadOnlyList<Tensor>, Func<Tensor, Tensor>> product)
    {
        if (_open is not { Count: > 0 } open)
        {
            foreach (var t in saved) t.Dispose();
            return;
        }
        foreach (var t in saved) t.DetachFromDisposeScope();
        open.Peek().Offers.Add(new Offered(output, [.. saved], product));
    }

    /// <summary>For tests: on this thread, f's offers are not asked for, so the adjoint uses autograd's product.</summary>
    internal static bool Declined { get => _declined; set => _declined = value; }
    [ThreadStatic] static bool _declined;

    /// <summary>An offered product: the output it belongs to, the tensors it reads, and how to build it from them.</summary>
    internal sealed record Offered(Tensor Output, Tensor[] Saved, Func<IReadOnlyList<Tensor>, Func<Tensor, Tensor>> Product) : IDisposable
    {
        public void Dispose()
        {
            foreach (var t in Saved) t.Dispose();
        }
    }

    /// <summary>Opens a capture around the graph-building application of f; <see cref="Capture.TakeFor"/> then gives its offer.</summary>
    internal static Capture Begin()
    {
        var c = new Capture();
        (_open ??= new()).Push(c);
        return c;
    }

    internal sealed class Capture : IDisposable
    {
        public List<Offered> Offers { get; } = [];

        /// <summary>The offer for <paramref name="output"/> (now the caller's to dispose), or null; the others are freed.</summary>
        public Offered? TakeFor(Tensor output)
        {
            var mine = Offers.FirstOrDefault(o => ReferenceEquals(o.Output, output));
            DropAllBut(mine);
            return mine;
        }

        public void Dispose()
        {
            DropAllBut(null);
            if (_open is { Count: > 0 } open && ReferenceEquals(open.Peek(), this)) open.Pop();
        }

        // Frees every offer but `keep` (the caller's now) and empties the list.
        void DropAllBut(Offered? keep)
        {
            foreach (var o in Offers)
                if (!ReferenceEquals(o, keep)) o.Dispose();
            Offers.Clear();
        }
    }
}
