using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Deq.Models;

/// <summary>Which recurrent cell a <see cref="RecurrentCopyModel"/> uses.</summary>
public enum RecurrentCell
{
    /// <summary>torch.nn.LSTM.</summary>
    Lstm,
    /// <summary>torch.nn.GRU.</summary>
    Gru,
}

/// <summary>
/// The recurrent copy-memory baseline of Table 1: symbol embedding, one LSTM or GRU layer, and a linear
/// classifier on the last 10 positions (logits [B, 10, 10], the shape <see cref="CopyMemoryModel"/> returns).
/// </summary>
public sealed class RecurrentCopyModel : nn.Module
{
    readonly Embedding embedding;
    readonly LSTM? lstm;
    readonly GRU? gru;
    readonly Linear classifier;

    /// <summary>The cell type.</summary>
    public RecurrentCell Cell { get; }

    /// <summary>Builds the model with <paramref name="hidden"/> units (embedding width = hidden).</summary>
    public RecurrentCopyModel(RecurrentCell cell, int hidden) : base($"{cell}CopyModel")
    {
        if (hidden < 1) throw new ArgumentOutOfRangeException(nameof(hidden), hidden, "RecurrentCopyModel: hidden units must be positive.");
        Cell = cell;
        embedding = nn.Embedding(CopyMemoryModel.Vocabulary, hidden);
        if (cell == RecurrentCell.Lstm) lstm = nn.LSTM(hidden, hidden, batchFirst: true);
        else gru = nn.GRU(hidden, hidden, batchFirst: true);
        classifier = nn.Linear(hidden, CopyMemoryModel.Vocabulary);
        RegisterComponents();
    }

    /// <summary>Parameters of a model with <paramref name="hidden"/> units: embedding, cell (gates x (in + hidden + 2 biases)) and classifier.</summary>
    public static long ParameterCount(RecurrentCell cell, int hidden)
    {
        long gates = cell == RecurrentCell.Lstm ? 4 : 3, h = hidden, v = CopyMemoryModel.Vocabulary;
        return v * h + gates * h * (2 * h + 2) + h * v + v;
    }

    /// <summary>The largest hidden width whose <see cref="ParameterCount"/> does not exceed <paramref name="budget"/> (at least 1).</summary>
    public static int HiddenFor(RecurrentCell cell, long budget)
    {
        int h = 1;
        while (ParameterCount(cell, h + 1) <= budget) h++;
        return h;
    }

    /// <summary>Logits [B, 10, 10] for the last 10 positions of inputs [B, T+20].</summary>
    public Tensor Forward(Tensor inputs)
    {
        if (inputs.dim() != 2 || inputs.shape[1] < CopyMemoryModel.Digits)
            throw new ArgumentException($"Copy memory expects inputs [B, T+20]; got [{string.Join(", ", inputs.shape)}].", nameof(inputs));
        var e = embedding.forward(inputs);
        var h = lstm is not null ? lstm.forward(e).Item1 : gru!.forward(e).Item1;
        return classifier.forward(h.narrow(1, h.shape[1] - CopyMemoryModel.Digits, CopyMemoryModel.Digits));
    }
}
