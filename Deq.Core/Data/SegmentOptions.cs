namespace Deq.Data;

/// <summary>How a token stream is cut for truncated backpropagation through time.</summary>
/// <param name="Batch">Parallel streams: the token ids are split into this many consecutive columns.</param>
/// <param name="Length">Segment length L (BPTT length): each step sees L tokens per column.</param>
public sealed record SegmentOptions(int Batch = 20, int Length = 35)
{
    /// <summary>Throws an <see cref="ArgumentOutOfRangeException"/> naming the first bad option.</summary>
    public SegmentOptions Validate()
    {
        if (Batch <= 0) throw new ArgumentOutOfRangeException(nameof(Batch), Batch, "SegmentOptions.Batch must be positive.");
        if (Length <= 0) throw new ArgumentOutOfRangeException(nameof(Length), Length, "SegmentOptions.Length must be positive.");
        return this;
    }
}
