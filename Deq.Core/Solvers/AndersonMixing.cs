using System.Runtime.InteropServices;
using TorchSharp;
using static TorchSharp.torch;

namespace Deq.Solvers;

/// <summary>
/// Anderson's mixing weights per batch element: alpha minimising ||G^T alpha|| subject to sum(alpha) = 1, with
/// the ridge lambda s I on G G^T (s the mean of its diagonal, so lambda is unit-free), and the next iterate
/// sum_i alpha_i ((1 - beta) x_i + beta f(x_i)).
/// On an accelerator the bordered system [0 1^T; 1 GG^T + lambda s I] [c; alpha] = [1; 0] is one batched solve.
/// On the CPU the [batch, m, m] Gram matrix is read in place and each element's system is solved in C# in
/// float64 (Cholesky of GG^T + lambda s I, then alpha = y / sum(y) for (GG^T + lambda s I) y = 1, the same
/// weights): a batched LAPACK call on 64 tiny systems costs about 20 us, as much as a toy f.
/// </summary>
internal static class AndersonMixing
{
    /// <summary>The mixed iterate [batch, width], or null when the (device) system is singular.</summary>
    public static Tensor? Mix(Anderson.History h, Anderson.Window v, AndersonOptions a, int newest)
    {
        Tensor alpha;
        if (!SolveLedger.OnDevice(h.Gram))
        {
            HostWeights(h, v.Used, a.Lambda, newest);
            alpha = v.Alpha;
        }
        else
        {
            v.Block.copy_(v.Gram);
            var scale = v.GramDiagonal.mean([1], keepdim: true).clamp_min_(1e-30);
            v.BlockDiagonal.add_(scale.mul_(a.Lambda));
            try
            {
                alpha = torch.linalg.solve(v.System, v.Rhs).narrow(1, 1, v.Used).transpose(1, 2);   // [b, 1, used]
            }
            catch (ExternalException)
            {
                return null;
            }
        }
        // sum_i alpha_i p_i: beta times the mixed f values plus (1 - beta) times the mixed iterates.
        return torch.bmm(alpha, v.Ps).squeeze(1);
    }

    // Writes each element's weights into h.Alpha[:, 0, :used]. An element whose system is singular (only with
    // lambda = 0 and a repeated history) takes a plain step: all weight on the newest entry, slot `newest`.
    static void HostWeights(Anderson.History h, int used, double lambda, int newest)
    {
        int m = h.Memory;
        long batch = h.Gram.shape[0];
        bool wide = h.Gram.dtype == ScalarType.Float64;
        Span<double> gram64 = wide ? MemoryMarshal.Cast<byte, double>(h.Gram.bytes) : default, alpha64 = wide ? MemoryMarshal.Cast<byte, double>(h.Alpha.bytes) : default;
        Span<float> gram32 = wide ? default : MemoryMarshal.Cast<byte, float>(h.Gram.bytes), alpha32 = wide ? default : MemoryMarshal.Cast<byte, float>(h.Alpha.bytes);
        Span<double> a = stackalloc double[used * used];
        Span<double> y = stackalloc double[used];
        for (long b = 0; b < batch; b++)
        {
            int at = (int)(b * m * m);
            for (int i = 0; i < used; i++)
                for (int j = 0; j < used; j++)
                    a[i * used + j] = wide ? gram64[at + i * m + j] : gram32[at + i * m + j];
            double scale = 0;
            for (int i = 0; i < used; i++) scale += a[i * used + i];
            scale = Math.Max(scale / used, 1e-30) * lambda;
            for (int i = 0; i < used; i++) a[i * used + i] += scale;
            bool ok = Cholesky(used, a) && SolveOnes(used, a, y);
            int row = (int)(b * m);
            for (int i = 0; i < used; i++)
            {
                double w = ok ? y[i] : i == newest ? 1 : 0;
                if (wide) alpha64[row + i] = w;
                else alpha32[row + i] = (float)w;
            }
        }
    }

    // In place: the lower Cholesky factor of the SPD matrix a (n x n, row-major), with the reciprocal of each
    // diagonal entry stored on the diagonal (a division costs ~10 multiplications; this leaves n of them);
    // false if a is not positive definite.
    static bool Cholesky(int n, Span<double> a)
    {
        for (int j = 0; j < n; j++)
        {
            double d = a[j * n + j];
            for (int k = 0; k < j; k++) d -= a[j * n + k] * a[j * n + k];
            if (!(d > 0)) return false;
            double inverse = 1 / Math.Sqrt(d);
            a[j * n + j] = inverse;
            for (int i = j + 1; i < n; i++)
            {
                double s = a[i * n + j];
                for (int k = 0; k < j; k++) s -= a[i * n + k] * a[j * n + k];
                a[i * n + j] = s * inverse;
            }
        }
        return true;
    }

    // y = A^-1 1 / (1^T A^-1 1) for A = L L^T (from Cholesky: L below the diagonal, 1 / L_ii on it): weights that
    // sum to one. False if they cannot be normalised.
    static bool SolveOnes(int n, Span<double> l, Span<double> y)
    {
        for (int i = 0; i < n; i++)
        {
            double s = 1;
            for (int k = 0; k < i; k++) s -= l[i * n + k] * y[k];
            y[i] = s * l[i * n + i];
        }
        for (int i = n - 1; i >= 0; i--)
        {
            double s = y[i];
            for (int k = i + 1; k < n; k++) s -= l[k * n + i] * y[k];
            y[i] = s * l[i * n + i];
        }
        double total = 0;
        for (int i = 0; i < n; i++) total += y[i];
        if (!(Math.Abs(total) > 0) || !double.IsFinite(total)) return false;
        double scale = 1 / total;
        for (int i = 0; i < n; i++) y[i] *= scale;
        return true;
    }
}
