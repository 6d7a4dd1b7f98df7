using System.Collections.Immutable;

namespace Deq.Training;

/// <summary>
/// Named language-model factories, for `deq train --model NAME`. Immutable: <see cref="With"/> returns a
/// new registry. Training knows no model family: the catalogue of shipped models lives above it
/// (<c>Deq.Models.DeqLanguageModels.Registry</c>), so the dependency runs Models → Training only.
/// </summary>
/// <param name="Factories">Name → factory.</param>
public sealed record ModelRegistry(ImmutableSortedDictionary<string, Func<LanguageModelSpec, LanguageModel>> Factories)
{
    /// <summary>No models.</summary>
    public static ModelRegistry Empty { get; } = new(ImmutableSortedDictionary<string, Func<LanguageModelSpec, LanguageModel>>.Empty);

    /// <summary>This registry plus (or with a replaced) <paramref name="name"/>.</summary>
    public ModelRegistry With(string name, Func<LanguageModelSpec, LanguageModel> factory) => new(Factories.SetItem(name, factory));

    /// <summary>Registered names.</summary>
    public IEnumerable<string> Names => Factories.Keys;

    /// <summary>Builds a model by name; an unknown name is an error listing the known ones.</summary>
    public LanguageModel Create(string name, LanguageModelSpec spec) =>
        Factories.TryGetValue(name, out var f) ? f(spec)
            : throw new ArgumentException($"unknown model '{name}'; registered: {string.Join(", ", Names)}.", nameof(name));
}
