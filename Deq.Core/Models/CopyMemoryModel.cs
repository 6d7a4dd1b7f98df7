using Deq.Implicit;
using Deq.Layers;
using TorchSharp;
using static TorchSharp.torch;

namespace Deq.Models;

/// <summary>Copy-memory settings: the task length T and the DEQ-Transformer that solves it (data: <see cref="Data.CopyMemory"/>).</summary>
/// <param name="BlankLength">T: blanks between the digits and the recall (sequences are T + 20 long).</param>
/// <param name="Model">The DEQ-Transformer; its NToken is forced to 10 and it keeps no memory across batches.</param>
public sealed record CopyMemoryConfig(int BlankLength = 20, DeqTransformerConfig? Model = null)
{
    /// <summary>The transformer actually used.</summary>
    public DeqTransformerConfig EffectiveModel => (Model ?? DeqTransformerConfig.Tiny) with { NToken = CopyMemoryModel.Vocabulary, MemLen = 0 };

    /// <summary>
    /// Table 1's setting, T = 400. The paper does not list the copy-memory model's sizes; d_model 32 with
    /// 2 heads is our choice (a small model, in the spirit of the Table 1 comparisons).
    /// </summary>
    public static CopyMemoryConfig Paper { get; } = new(400, new DeqTransformerConfig(DModel: 32, NHead: 2, DHead: 16, DInner: 64, SeqLen: 420, MemLen: 0));

    /// <summary>A CPU-sized setting: T = 20, the tiny transformer.</summary>
    public static CopyMemoryConfig Tiny { get; } = new();
}

/// <summary>Copy-memory predictions.</summary>
/// <param name="Logits">Symbol logits of the last 10 positions, [B, 10, 10].</param>
/// <param name="Equilibrium">z* and the solver statistics.</param>
public sealed record CopyMemoryOutput(Tensor Logits, EquilibriumResult Equilibrium);

/// <summary>A DEQ-Transformer for copy memory: embedding, equilibrium, and a linear classifier on the last 10 positions.</summary>
public sealed class CopyMemoryModel : nn.Module
{
    /// <summary>Symbols: 0 blank, 1-8 digits, 9 delimiter.</summary>
    public const int Vocabulary = 10;
    /// <summary>Digits to recall, at the last positions.</summary>
    public const int Digits = 10;

    /// <summary>Symbol embedding.</summary>
    public readonly AdaptiveEmbedding embedding;
    /// <summary>Injection and f.</summary>
    public readonly DeqTransformerCore core;
    /// <summary>d_model -> 10 symbol logits.</summary>
    public readonly WeightNormLinear classifier;

    /// <summary>The settings.</summary>
    public CopyMemoryConfig Config { get; }

    /// <summary>Builds the model.</summary>
    public CopyMemoryModel(CopyMemoryConfig config) : base(nameof(CopyMemoryModel))
    {
        Config = config;
        var c = config.EffectiveModel;
        embedding = new AdaptiveEmbedding(new AdaptiveClusters(Vocabulary, c.DModel, c.DModel), scale: true, c.EmbedInitStd);
        core = new DeqTransformerCore(c);
        classifier = new WeightNormLinear(c.DModel, Vocabulary, hasBias: true, weightNorm: false, c.InitStd);
        RegisterComponents();
    }

    /// <summary>Logits [B, 10, 10] for the last 10 positions of inputs [B, T+20], and the solver statistics.</summary>
    public CopyMemoryOutput Forward(Tensor inputs, EquilibriumOptions options)
    {
        if (inputs.dim() != 2 || inputs.shape[1] < Digits)
            throw new ArgumentException($"Copy memory expects inputs [B, T+20]; got [{string.Join(", ", inputs.shape)}].", nameof(inputs));
        var c = Config.EffectiveModel;
        var cell = core.Bind(VariationalDropout.Locked(embedding.Forward(inputs), c.Dropout, training), null);
        var eq = Equilibrium.Solve(cell.F, cell.Z0, options);
        cell.Release();   // f's graph at z* exists: backward runs without the injection
        var last = eq.Z.narrow(1, eq.Z.shape[1] - Digits, Digits);
        return new CopyMemoryOutput(classifier.Forward(VariationalDropout.Locked(last, c.Dropout, training)), eq);
    }

    /// <summary>Mean cross-entropy of logits [B, 10, 10] against targets [B, T+20] (their last 10 are scored) or the digits [B, 10].</summary>
    public static Tensor Loss(Tensor logits, Tensor targets)
    {
        if (targets.dim() != 2 || targets.shape[0] != logits.shape[0] || targets.shape[1] < Digits)
            throw new ArgumentException($"Copy-memory targets must be [{logits.shape[0]}, >= {Digits}]; got [{string.Join(", ", targets.shape)}].", nameof(targets));
        var last = targets.narrow(1, targets.shape[1] - Digits, Digits);
        return nn.functional.cross_entropy(logits.reshape(-1, Vocabulary), last.reshape(-1));
    }
}
