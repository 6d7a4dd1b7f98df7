using TorchSharp;
using static TorchSharp.torch;

namespace Deq.Data;

/// <summary>
/// Time-major batching as in the reference word-level LM code: the stream is cut into Batch
/// consecutive columns, [tokens x batch], and read in consecutive segments of L rows so a model
/// can carry memory from one segment into the next.
/// </summary>
public static class Batching
{
    /// <summary>
    /// [n / batch, batch] with column j holding tokens j*(n/batch) .. (j+1)*(n/batch)-1; the
    /// remainder n mod batch is dropped. On <paramref name="device"/> (default: the tokens' device).
    /// </summary>
    public static Tensor Batchify(Tensor tokens, int batch, Device? device = null)
    {
        if (tokens.dim() != 1) throw new ArgumentException($"Batchify: tokens must be 1-D, got shape [{string.Join(", ", tokens.shape)}].", nameof(tokens));
        if (batch <= 0) throw new ArgumentOutOfRangeException(nameof(batch), batch, "Batchify: batch must be positive.");
        long rows = tokens.shape[0] / batch;
        if (rows < 2) throw new ArgumentException($"Batchify: {tokens.shape[0]} tokens are too few for batch {batch} (each column needs at least 2).", nameof(tokens));
        using var scope = torch.NewDisposeScope();
        var b = tokens.narrow(0, 0, rows * batch).view(batch, rows).t().contiguous();
        return b.to(device ?? tokens.device).MoveToOuterDisposeScope();
    }

    /// <summary>Segments in one pass: ceil((rows - 1) / length), the last possibly shorter.</summary>
    public static int SegmentCount(Tensor batched, int length)
    {
        if (length <= 0) throw new ArgumentOutOfRangeException(nameof(length), length, "segment length must be positive.");
        return (int)((batched.shape[0] - 1 + length - 1) / length);
    }

    /// <summary>
    /// Segment <paramref name="index"/>: input rows [i, i+L), target rows [i+1, i+L+1) with i = index*L,
    /// both [L', batch] (views, no copy).
    /// </summary>
    public static (Tensor Input, Tensor Target) Segment(Tensor batched, int index, int length)
    {
        int count = SegmentCount(batched, length);
        if (index < 0 || index >= count) throw new ArgumentOutOfRangeException(nameof(index), index, $"segment index must be in [0, {count}).");
        long start = (long)index * length;
        long len = Math.Min(length, batched.shape[0] - 1 - start);
        return (batched.narrow(0, start, len), batched.narrow(0, start + 1, len));
    }

    /// <summary>All segments in order.</summary>
    public static IEnumerable<(Tensor Input, Tensor Target)> Segments(Tensor batched, int length)
    {
        int count = SegmentCount(batched, length);
        for (int i = 0; i < count; i++) yield return Segment(batched, i, length);
    }
}
