using Deq.Implicit;
using Deq.Layers;
using Deq.Solvers;
using TorchSharp;
using static TorchSharp.torch;

namespace Deq.Models;

/// <summary>
/// f of a DEQ-TrellisNet bound to one segment: its injection, carried states and dropout masks are fixed,
/// so <see cref="F"/> is one function z -> f(z; x) over z = [h; c] shaped [B, T, 2 h_size].
/// f(z)_t: a = inject(x)_t + conv_k(h)_t (h padded with the carried states), split into gates i, o, g, f;
/// c_t = sigma(f) * c_{t-1} + sigma(i) * tanh(g), h_t = sigma(o) * tanh(c_t)  (TrellisNet's LSTM activation).
/// </summary>
public sealed class TrellisNetCell
{
    readonly CausalConv1d _conv;
    readonly Tensor? _weightDrop;
    readonly long _hs;
    readonly long[] _zShape;
    Tensor? _solveWeight;
    readonly DisposeScope? _bindScope = torch.CurrentDisposeScope;   // the scope Bind ran in, which owns the injection
    bool _released;

    internal TrellisNetCell(CausalConv1d conv, Tensor? weightDrop, Tensor embedded, Tensor injection, Tensor memoryZ, Tensor memoryX, Tensor? hiddenMask, long hSize)
    {
        (_conv, _weightDrop, _hs) = (conv, weightDrop, hSize);
        Embedded = embedded;
        Injection = injection;
        MemoryZ = memoryZ;
        MemoryX = memoryX;
        HiddenMask = hiddenMask;
        long k = conv.KernelSize;
        LeftH = memoryZ.narrow(1, memoryZ.shape[1] - (k - 1), k - 1).narrow(2, 0, hSize);
        LastC = memoryZ.narrow(1, memoryZ.shape[1] - 1, 1).narrow(2, hSize, hSize);
        _zShape = [injection.shape[0], injection.shape[1], 2 * hSize];
        F = Apply;
    }

    /// <summary>The embedded segment x [B, T, d_embed].</summary>
    public Tensor Embedded { get; }
    /// <summary>The injection inject(x) [B, T, 4 h_size].</summary>
    public Tensor Injection { get; }
    /// <summary>Carried states [B, max(k-1,1), 2 h_size].</summary>
    public Tensor MemoryZ { get; }
    /// <summary>Carried embedded inputs [B, k-1, d_embed].</summary>
    public Tensor MemoryX { get; }
    /// <summary>Dropout mask on h entering the convolution, [B, 1, h_size], or null.</summary>
    public Tensor? HiddenMask { get; }
    /// <summary>The h part of the carried states that pads the convolution, [B, k-1, h_size].</summary>
    public Tensor LeftH { get; }
    /// <summary>The carried c of the last position, [B, 1, h_size].</summary>
    public Tensor LastC { get; }
    /// <summary>z -> f(z; x).</summary>
    public Func<Tensor, Tensor> F { get; }
    /// <summary>The initial guess: zeros [B, T, 2 h_size] that hold no memory (<see cref="InitialGuess.Zeros"/>).</summary>
    public Tensor Z0 => InitialGuess.Zeros(_zShape, Embedded.dtype, Embedded.device);

    /// <summary>
    /// Frees the injection (two copies of z) once the equilibrium is solved: the graph of f at z* does not need
    /// it, so backward runs without it. f cannot be called afterwards, so an adjoint that calls f during
    /// backward (none of the shipped ones does) must not be combined with it.
    /// </summary>
    public void Release()
    {
        _released = true;
        Injection.Dispose();
        _solveWeight?.Dispose();
        _solveWeight = null;
    }

    Tensor Apply(Tensor z)
    {
        if (_released)
            throw new InvalidOperationException("TrellisNetCell: f was called after Release(), which freed its injection; release the cell only once f is no longer needed (after the solve and every adjoint that calls f).");
        // Channels first, the layout the convolution computes in: the gates are contiguous channel blocks of its
        // output, so in backward their gradients join straight into the [B, 4h, T] layout the convolution's
        // backward reads (in [B, T, C] they needed a transposed copy, 2 copies of z), and its input needs no copy
        // either. The same operations on the same values; only the memory layout differs.
        var zc = z.transpose(1, 2);                                            // [B, 2h, T]
        var (h, c) = (zc.narrow(1, 0, _hs), zc.narrow(1, _hs, _hs));
        var (left, mask, injection) = (LeftH.transpose(1, 2), HiddenMask?.transpose(1, 2), Injection.transpose(1, 2));
        if (!torch.is_grad_enabled()) return ApplyInPieces(h, c, left, mask, injection);
        var cPrev = torch.cat([LastC.transpose(1, 2), c.narrow(2, 0, c.shape[2] - 1)], 2);
        var weight = _conv.Weight(_weightDrop);
        var pre = Convolve(h, left, mask, weight).add_(injection);           // conv + injection in the convolution's output: a sum commutes exactly
        if (!VectorJacobian.Wanted) return Gate(pre, cPrev, null);
        // The implicit adjoint takes f's own vector-Jacobian product (TrellisNetProduct), which reads what the graph saves.
        var kept = new Tensor[5];
        var fz = Gate(pre, cPrev, kept);
        VectorJacobian.Offer(fz, TrellisNetProduct.Saved(kept[0], kept[1], kept[2], kept[3], kept[4], cPrev, weight, mask), saved => TrellisNetProduct.Over(saved, _hs));
        return fz;
    }

    // The weight the solver's calls use (normalised, with its DropConnect mask), made once per Bind: the parameters
    // cannot change within one, and the same operations on the same values give the same weight (h 512: 2M entries
    // a call otherwise). With gradients each call still forms its own, so that backward's sums keep their order.
    // It belongs to the Bind's scope, as the injection does (f's own scope ends with each call), or goes on Release.
    Tensor SolveWeight()
    {
        if (_solveWeight is null)
        {
            _solveWeight = _conv.Weight(_weightDrop).detach().DetachFromDisposeScope();
            _bindScope?.Attach(_solveWeight);
        }
        return _solveWeight;
    }

    // conv_k([left; h]) [B, 4h, T]; the masked h it convolved goes at once.
    Tensor Convolve(Tensor h, Tensor left, Tensor? mask, Tensor? weight)
    {
        using var inputs = torch.NewDisposeScope();
        return inputs.MoveToOuter(_conv.ForwardChannelsFirst(VariationalDropout.Apply(h, mask), VariationalDropout.Apply(left, mask), weight));
    }

    // TrellisNet's LSTM activation on the pre-activations [i, o, g, f] (the reference's order), channels first:
    // c_t = sigma(f) c_{t-1} + sigma(i) tanh(g), h_t = sigma(o) tanh(c_t). Each temporary that backward does not
    // save is freed as soon as it is used (the pre-activations, 2 copies of z, once the gates are formed), so
    // building the graph of f at z* peaks at what it keeps plus one gate's work, not at all of f's temporaries.
    // With `kept` set, i, o, g, f and tanh(c_t) go into it (handles of the caller's, who frees them) instead of being freed here.
    static Tensor Gate(Tensor pre, Tensor cPrev, Tensor[]? kept)
    {
        Tensor i, o, g, f;
        using (var gates = torch.NewDisposeScope())
        {
            var chunks = pre.chunk(4, 1);
            (i, o, g, f) = (torch.sigmoid(chunks[0]), torch.sigmoid(chunks[1]), torch.tanh(chunks[2]), torch.sigmoid(chunks[3]));
            gates.MoveToOuter(i, o, g, f);
        }
        pre.Dispose();
        Tensor hNew, cNew, tanhC;
        using (var step = torch.NewDisposeScope())
        {
            cNew = (f * cPrev).add_(i * g);                                    // (a + b, in a's memory)
            hNew = o * (tanhC = torch.tanh(cNew));
            step.MoveToOuter(hNew, cNew, tanhC);
        }
        if (kept is not null) (kept[0], kept[1], kept[2], kept[3], kept[4]) = (i, o, g, f, tanhC);
        else foreach (var t in new[] { cPrev, i, o, g, f, tanhC }) t.Dispose();   // backward keeps its own references to what it saves
        var result = torch.cat([hNew.transpose(1, 2), cNew.transpose(1, 2)], 2);   // [B, T, 2h]
        hNew.Dispose();
        cNew.Dispose();
        return result;
    }

    // f without gradients (the solver's calls), a few batch elements at a time into the rows of one result: the
    // convolution's output [p, 4h, T] and libtorch's work space for it exist for a piece only (forward stages 2.5 copies
    // of z lower at h 256, batch 15). Elements are independent, and libtorch convolves pieces of at least 2 elements
    // as it does the whole batch, so the values are the same.
    Tensor ApplyInPieces(Tensor h, Tensor c, Tensor left, Tensor? mask, Tensor injection)
    {
        var result = torch.empty(_zShape, h.dtype, h.device);                 // [B, T, 2h]
        var lastC = LastC.transpose(1, 2);
        foreach (var (b0, p) in BatchPieces.Of(h.size(0), most: 4, least: 4))
        {
            using var piece = torch.NewDisposeScope();
            Tensor At(Tensor x) => x.narrow(0, b0, p);
            var pre = Convolve(At(h), At(left), mask is null ? null : At(mask), SolveWeight()).add_(At(injection));
            GateInPlace(pre, At(c), At(lastC), At(result));
        }
        return result;
    }

    // The gates in the convolution's output, and c_t and h_t in f's result (rows of it): c_{t-1} is copied straight
    // into the result's c half and c_t and h_t are formed there.
    void GateInPlace(Tensor pre, Tensor c, Tensor lastC, Tensor result)
    {
        var gates = pre.chunk(4, 1);
        gates[0].sigmoid_(); gates[1].sigmoid_(); gates[2].tanh_(); gates[3].sigmoid_();
        var rc = result.transpose(1, 2);
        var (hNew, cNew) = (rc.narrow(1, 0, _hs), rc.narrow(1, _hs, _hs));
        long t = c.shape[2];
        cNew.narrow(2, 0, 1).copy_(lastC);
        if (t > 1) cNew.narrow(2, 1, t - 1).copy_(c.narrow(2, 0, t - 1));
        cNew.mul_(gates[3]).addcmul_(gates[0], gates[2], 1);
        hNew.copy_(cNew).tanh_().mul_(gates[1]);                               // sigma(o) * tanh(c_t): a product commutes exactly
    }

    /// <summary>The state for the next segment: the last states and inputs of [memory; segment], detached.</summary>
    public TrellisMemory NextMemory(Tensor zStar)
    {
        using var _ = torch.no_grad();
        long keepZ = MemoryZ.shape[1], keepX = MemoryX.shape[1];
        var z = torch.cat([MemoryZ, zStar.detach()], 1);
        var x = torch.cat([MemoryX, Embedded.detach()], 1);
        return new TrellisMemory(z.narrow(1, z.shape[1] - keepZ, keepZ).contiguous(), x.narrow(1, x.shape[1] - keepX, keepX).contiguous());
    }
}
