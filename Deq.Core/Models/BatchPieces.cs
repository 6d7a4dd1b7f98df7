namespace Deq.Models;

/// <summary>
/// How a model's f splits its batch to bound its temporaries: contiguous pieces, as even as possible, up to a number
/// of them and of at least some elements each. (libtorch convolves a single small element by another path, with other
/// round-off; pieces of 2 or more give the whole batch's values. Smaller pieces cost more time a call.)
/// </summary>
internal static class BatchPieces
{
    /// <summary>(first element, elements) of each of up to <paramref name="most"/> pieces of at least <paramref name="least"/> (>= 2) elements.</summary>
    public static IEnumerable<(long Start, long Length)> Of(long batch, int most, int least)
    {
        long n = Math.Max(1, Math.Min(most, batch / least));
        for (long k = 0, start = 0; k < n; k++)
        {
            long length = batch / n + (k < batch % n ? 1 : 0);
            yield return (start, length);
            start += length;
        }
    }
}
