using TorchSharp;
using static TorchSharp.torch;

namespace Deq.Models;

/// <summary>
/// The DEQ-TrellisNet f's vector-Jacobian product in z, offered to the implicit adjoint (<see cref="Implicit.VectorJacobian"/>).
/// It reads what f's graph at z* saves anyway: the gates, tanh(c_t), c_{t-1}, the convolution's weight and the dropout
/// mask on h. Autograd's product holds the gate gradient [B, 4h, T] of the whole batch beside libtorch's reordered copy
/// of it in the convolution's backward (5.4 copies of z at h 256, batch 15); this one forms both for a few batch
/// elements at a time, with the ops of libtorch's backward in its order.
/// </summary>
internal static class TrellisNetProduct
{
    /// <summary>The tensors the product reads, as handles of its own: i, o, g, f, tanh(c_t), c_{t-1} [B, h, T], the weight [4h, h, k] and the mask [B, h, 1] if any.</summary>
    public static Tensor[] Saved(Tensor i, Tensor o, Tensor g, Tensor f, Tensor tanhC, Tensor cPrev, Tensor weight, Tensor? mask) =>
        [.. new[] { i, o, g, f, tanhC, cPrev, weight, mask }.OfType<Tensor>().Select(t => t.detach())];

    /// <summary>g -> (df/dz)^T g over <paramref name="saved"/> (see <see cref="Saved"/>), for g [B, T, 2h].</summary>
    public static Func<Tensor, Tensor> Over(IReadOnlyList<Tensor> saved, long hSize) => v => Apply(saved, v, hSize);

    static Tensor Apply(IReadOnlyList<Tensor> s, Tensor v, long hs)
    {
        var dz = torch.empty(v.shape, dtype: v.dtype, device: v.device);
        foreach (var (b0, p) in BatchPieces.Of(v.size(0), most: 4, least: 2))
            using (torch.NewDisposeScope()) Piece(s, v.narrow(0, b0, p), dz.narrow(0, b0, p), b0, hs);
        return dz;
    }

    // One piece of the batch: v and dz are its rows [p, T, 2h]; the saved tensors are narrowed to them from b0.
    static void Piece(IReadOnlyList<Tensor> s, Tensor v, Tensor dz, long b0, long hs)
    {
        long p = v.size(0), t = v.size(1);
        Tensor At(int k) => s[k].narrow(0, b0, p);
        var (i, o, g, f, th, cPrev, w) = (At(0), At(1), At(2), At(3), At(4), At(5), s[6]);
        var mask = s.Count > 7 ? At(7) : null;
        var vt = v.transpose(1, 2);                                       // [p, 2h, T], as the output's cat and transpose pass it back
        var (vh, vc) = (vt.narrow(1, 0, hs), vt.narrow(1, hs, hs));
        var dzt = dz.transpose(1, 2);
        var (dh, dcz) = (dzt.narrow(1, 0, hs), dzt.narrow(1, hs, hs));

        // c_t receives the output's c half and, through h_t = o tanh(c_t), tanh's backward: grad (1 - y y).
        var dc = (vh * o).mul_(OneMinusSquare(th)).add_(vc);
        // c_{t-1} = [carried c; c_0 .. c_{T-2}] gets dc f; z's last c receives nothing.
        if (t > 1) dcz.narrow(2, 0, t - 1).copy_(dc.narrow(2, 1, t - 1)).mul_(f.narrow(2, 1, t - 1));
        dcz.narrow(2, t - 1, 1).zero_();

        // The pre-activations' gradient [p, 4h, T] in the gates' order [i, o, g, f]: sigmoid's backward grad (1 - y) y,
        // tanh's grad (1 - y y), each of its product's gradient.
        var dpre = torch.empty(p, 4 * hs, t, dtype: v.dtype, device: v.device);
        var blocks = dpre.chunk(4, 1);
        Sigmoid(blocks[0].copy_(dc).mul_(g), i);
        Sigmoid(blocks[1].copy_(vh).mul_(th), o);
        blocks[2].copy_(dc).mul_(i).mul_(OneMinusSquare(g));
        Sigmoid(blocks[3].copy_(dc).mul_(cPrev), f);
        dc.Dispose();

        // The convolution's input gradient is the transposed convolution of dpre; h's part is its last T positions
        // (the first k - 1 are the carried states'), times the dropout mask.
        var padded = nn.functional.conv_transpose1d(dpre, w);
        dpre.Dispose();
        var dx = padded.narrow(2, padded.size(2) - t, t);
        if (mask is null) dh.copy_(dx);
        else dh.copy_(dx).mul_(mask);
    }

    // grad (1 - y) y, in grad's memory.
    static void Sigmoid(Tensor grad, Tensor y)
    {
        using var complement = y.neg().add_(1);
        grad.mul_(complement).mul_(y);
    }

    // 1 - x x by addcmul, whose kernel fuses the multiply-add as libtorch's tanh backward does: the same bits (the
    // product's property test; 1 - (x x) rounded twice differs in the last place).
    static Tensor OneMinusSquare(Tensor x) => torch.ones_like(x).addcmul_(x, x, -1);
}
