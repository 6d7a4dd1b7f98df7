using TorchSharp;
using static TorchSharp.torch;

namespace Deq.Data;

/// <summary>Copy-memory task sizes.</summary>
/// <param name="T">Gap length: a sequence has T + 20 steps.</param>
/// <param name="TrainSize">Training sequences.</param>
/// <param name="TestSize">Test sequences.</param>
/// <param name="Seed">Seed of the generator that draws the digits (train first, then test).</param>
/// <param name="MarkerFillsTail">
/// False (default): one delimiter 9 at 0-based index T+9, zeros after it.
/// True: 9 on all of the last 11 steps, as the TCN/DEQ reference code writes it.
/// </param>
public sealed record CopyMemoryOptions(int T = 400, int TrainSize = 20_000, int TestSize = 2_000, long Seed = 1111, bool MarkerFillsTail = false)
{
    /// <summary>Throws an <see cref="ArgumentOutOfRangeException"/> naming the first bad option.</summary>
    public CopyMemoryOptions Validate()
    {
        if (T < 1) throw new ArgumentOutOfRangeException(nameof(T), T, "CopyMemoryOptions.T must be at least 1.");
        if (TrainSize < 1) throw new ArgumentOutOfRangeException(nameof(TrainSize), TrainSize, "CopyMemoryOptions.TrainSize must be positive.");
        if (TestSize < 1) throw new ArgumentOutOfRangeException(nameof(TestSize), TestSize, "CopyMemoryOptions.TestSize must be positive.");
        return this;
    }
}

/// <summary>Inputs and targets, each [samples, T + 20] int64 on the CPU.</summary>
/// <param name="TrainX">Training inputs.</param>
/// <param name="TrainY">Training targets.</param>
/// <param name="TestX">Test inputs.</param>
/// <param name="TestY">Test targets.</param>
public sealed record CopyMemoryData(Tensor TrainX, Tensor TrainY, Tensor TestX, Tensor TestY) : IDisposable
{
    /// <summary>Frees the four tensors.</summary>
    public void Dispose()
    {
        TrainX.Dispose(); TrainY.Dispose(); TestX.Dispose(); TestY.Dispose();
    }
}

/// <summary>
/// The copy-memory task (Hochreiter and Schmidhuber; Arjovsky et al.; used by the TCN and DEQ papers).
/// A sequence has T + 20 steps (1-based positions 1..T+20, 0-based indices 0..T+19):
/// <list type="bullet">
/// <item>input positions 1-10 (indices 0..9): digits drawn uniformly from 1..8;</item>
/// <item>input position T+10 (index T+9): the delimiter 9, the step right before the answer window;</item>
/// <item>everything else 0 (or 9 on the whole tail with <see cref="CopyMemoryOptions.MarkerFillsTail"/>);</item>
/// <item>target: 0 everywhere except the last ten positions (indices T+10..T+19), which repeat the ten digits.</item>
/// </list>
/// </summary>
public static class CopyMemory
{
    /// <summary>The delimiter digit.</summary>
    public const long Delimiter = 9;

    /// <summary>Number of digits to remember.</summary>
    public const int Digits = 10;

    /// <summary>Draws train then test sets from one seeded generator: the same options give the same data.</summary>
    public static CopyMemoryData Generate(CopyMemoryOptions? options = null)
    {
        options = (options ?? new CopyMemoryOptions()).Validate();
        using var g = new Generator((ulong)options.Seed, torch.CPU);
        var (trainX, trainY) = Draw(options, options.TrainSize, g);
        var (testX, testY) = Draw(options, options.TestSize, g);
        return new CopyMemoryData(trainX, trainY, testX, testY);
    }

    static (Tensor X, Tensor Y) Draw(CopyMemoryOptions o, int n, Generator g)
    {
        using var scope = torch.NewDisposeScope();
        int length = o.T + 2 * Digits;
        var digits = torch.randint(1, 9, [n, Digits], dtype: ScalarType.Int64, generator: g);
        var x = torch.zeros([n, length], dtype: ScalarType.Int64);
        x[.., ..Digits] = digits;
        if (o.MarkerFillsTail) x[.., (o.T + Digits - 1)..] = Delimiter;
        else x[.., o.T + Digits - 1] = Delimiter;
        var y = torch.zeros([n, length], dtype: ScalarType.Int64);
        y[.., (length - Digits)..] = digits;
        return (x.MoveToOuterDisposeScope(), y.MoveToOuterDisposeScope());
    }
}
