using System.Collections.Immutable;

namespace Deq.Training;

/// <summary>
/// Named language-model factories, for `deq train --model NAME`. Immutable: <see cref="With"/> returns a
/// new registry. Models living elsewhere in Deq.Core add their entry to <see cref="Default"/>.
/// </summary>
/// <param name="Factories">Name → factory.</param>
public sealed record ModelRegistry(ImmutableSortedDictionary<string, Func<LanguageModelSpec, LanguageModel>> Factories)
{
    /// <summary>Every model Deq ships.</summary>
    public static ModelRegistry Default { get; } = new ModelRegistry(ImmutableSortedDictionary<string, Func<LanguageModelSpec, LanguageModel>>.Empty)
        .With("lstm-tiny", spec => TinyLstm.Create(spec))
        .With("deq-transformer-tiny", spec => Models.DeqLanguageModels.Transformer("deq-transformer-tiny", spec, Models.DeqTransformerConfig.Tiny))
        .With("deq-transformer-cpu-small", spec => Models.DeqLanguageModels.Transformer("deq-transformer-cpu-small", spec, Models.DeqTransformerConfig.CpuSmall))
        .With("deq-trellisnet-tiny", spec => Models.DeqLanguageModels.TrellisNet("deq-trellisnet-tiny", spec, Models.DeqTrellisNetConfig.Tiny));

    /// <summary>This registry plus (or with a replaced) <paramref name="name"/>.</summary>
    public ModelRegistry With(string name, Func<LanguageModelSpec, LanguageModel> factory) => new(Factories.SetItem(name, factory));

    /// <summary>Registered names.</summary>
    public IEnumerable<string> Names => Factories.Keys;

    /// <summary>Builds a model by name; an unknown name is an error listing the known ones.</summary>
    public LanguageModel Create(string name, LanguageModelSpec spec) =>
        Factories.TryGetValue(name, out var f) ? f(spec)
            : throw new ArgumentException($"unknown model '{name}'; registered: {string.Join(", ", Names)}.", nameof(name));
}
