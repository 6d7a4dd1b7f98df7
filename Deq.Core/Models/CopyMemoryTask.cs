using TorchSharp;
using static TorchSharp.torch;

namespace Deq.Models;

/// <summary>A copy-memory batch.</summary>
/// <param name="Inputs">Symbols [B, T+20].</param>
/// <param name="Digits">The digits to recall at the last 10 positions, [B, 10].</param>
public sealed record CopyMemoryBatch(Tensor Inputs, Tensor Digits);

/// <summary>
/// The copy-memory task of Table 1 (as in Bai et al. 2018's TCN benchmark): 10 random digits (1-8),
/// T-1 blanks (0), then the delimiter (9) for 11 steps; the model must reproduce the digits at the
/// last 10 positions. Sequences have length T + 20.
/// </summary>
public static class CopyMemoryTask
{
    /// <summary>Symbols: 0 blank, 1-8 digits, 9 delimiter.</summary>
    public const int Vocabulary = 10;
    /// <summary>Digits to remember (and positions scored).</summary>
    public const int Digits = 10;

    /// <summary>A batch: inputs [B, T+20] and the digits to recall [B, 10] (targets of the last 10 positions), int64 on the CPU.</summary>
    public static CopyMemoryBatch Sample(int batch, int blankLength, Generator? generator = null)
    {
        if (batch < 1) throw new ArgumentOutOfRangeException(nameof(batch), batch, "Copy-memory batch must be positive.");
        if (blankLength < 1) throw new ArgumentOutOfRangeException(nameof(blankLength), blankLength, "Copy-memory T must be at least 1.");
        using var scope = torch.NewDisposeScope();
        var digits = torch.randint(1, 9, [batch, Digits], dtype: ScalarType.Int64, generator: generator);
        var blanks = torch.zeros(batch, blankLength - 1, dtype: ScalarType.Int64);
        var marks = torch.full(batch, Digits + 1, 9L, dtype: ScalarType.Int64);
        var inputs = torch.cat([digits, blanks, marks], 1);
        return new CopyMemoryBatch(inputs.MoveToOuterDisposeScope(), digits.MoveToOuterDisposeScope());
    }
}
