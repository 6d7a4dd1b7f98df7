using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Deq.Training;

/// <summary>
/// "lstm-tiny": embedding, one LSTM layer, linear decoder. A baseline that exercises the training
/// machinery (memory carried across segments) until the DEQ models are registered.
/// </summary>
public sealed class TinyLstm : nn.Module
{
    readonly Embedding _embed;
    readonly LSTM _lstm;
    readonly Linear _decoder;

    /// <summary>Width of embedding and hidden state.</summary>
    public int Hidden { get; }

    /// <summary>A model over <paramref name="vocab"/> words with width <paramref name="hidden"/>.</summary>
    public TinyLstm(int vocab, int hidden = 128) : base("lstm-tiny")
    {
        Hidden = hidden;
        _embed = nn.Embedding(vocab, hidden);
        _lstm = nn.LSTM(hidden, hidden, numLayers: 1);
        _decoder = nn.Linear(hidden, vocab);
        RegisterComponents();
    }

    /// <summary>input [L, B] → logits [L, B, V]; memory is (h, c) stacked as [2, 1, B, H]. The step is not used.</summary>
    public LanguageModelOutput Run(Tensor input, Tensor? memory, StepContext? step = null)
    {
        var e = _embed.call(input);
        var state = memory is null ? null : ((Tensor, Tensor)?)(memory[0], memory[1]);
        var (y, h, c) = _lstm.call(e, state);
        return new LanguageModelOutput(_decoder.call(y), torch.stack([h, c]));
    }

    /// <summary>The registry entry: a fresh model drawn under the spec's seed, on its device and dtype.</summary>
    public static LanguageModel Create(LanguageModelSpec spec, int hidden = 128)
    {
        torch.manual_seed(spec.Seed);
        var m = new TinyLstm(spec.VocabSize, hidden);
        m.to(spec.DType).to(spec.Device);
        return new LanguageModel(m, (input, memory, step) => m.Run(input, memory, step), new Dictionary<string, string>
        {
            ["model.name"] = "lstm-tiny",
            ["model.hidden"] = hidden.ToString(),
            ["model.vocab"] = spec.VocabSize.ToString(),
            ["model.init_seed"] = spec.Seed.ToString(),
        });
    }
}
