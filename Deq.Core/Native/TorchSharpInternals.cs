using System.Collections;
using System.Reflection;
using TorchSharp;
using static TorchSharp.torch;

namespace Deq.Native;

/// <summary>
/// Every private member of TorchSharp 0.107 that Deq relies on, found once by reflection, in one place. Each use has a
/// fallback where its member is missing (another TorchSharp): values stay right and only the memory or time it saves is
/// lost. A test requires all of them, so an upgrade that drops one is noticed rather than silently costing memory.
/// </summary>
internal static class TorchSharpInternals
{
    const BindingFlags Private = BindingFlags.NonPublic | BindingFlags.Instance;

    static readonly FieldInfo? ContextNode = typeof(autograd.AutogradContext).GetField("_node", Private);
    static readonly FieldInfo? ContextSaved = typeof(autograd.AutogradContext).GetField("_savedVariables", Private);
    static readonly Type? NodeOfT = typeof(torch).Assembly.GetType("TorchSharp.torch+autograd+Node`1");

    /// <summary>
    /// A custom autograd node's output cache: the placeholders (torch.empty_like of each output) that TorchSharp keeps
    /// for the graph's lifetime to materialise a zero gradient for an output that receives none. Null where missing.
    /// </summary>
    public static List<Tensor>? OutputCache(autograd.AutogradContext? ctx)
    {
        var node = ctx is null ? null : ContextNode?.GetValue(ctx);
        return node?.GetType().GetField("_outputCache", Private)?.GetValue(node) as List<Tensor>;
    }

    /// <summary>A custom node's saved tensors, which TorchSharp keeps until the node goes with its output. Null where missing.</summary>
    public static IList? SavedVariables(autograd.AutogradContext ctx) => ContextSaved?.GetValue(ctx) as IList;

    /// <summary>TorchSharp's factory that wraps a Memory&lt;T&gt; without a copy and unpins it from the storage's deleter
    /// (the public overloads copy).</summary>
    public delegate Tensor NoCopyFactory<T>(Memory<T> memory, ReadOnlySpan<long> shape, sbyte origType, ScalarType? dtype, Device? device,
        bool requiresGrad, bool clone, string[]? names);

    /// <summary>The no-copy factory for element type <typeparamref name="T"/>, or null where missing.</summary>
    public static NoCopyFactory<T>? NoCopy<T>() where T : unmanaged => NoCopyOf<T>.Factory;

    static class NoCopyOf<T> where T : unmanaged
    {
        public static readonly NoCopyFactory<T>? Factory = Find();

        static NoCopyFactory<T>? Find()
        {
            try
            {
                var method = typeof(torch).GetMethods(BindingFlags.NonPublic | BindingFlags.Static).FirstOrDefault(m =>
                    m.Name == "_tensor_generic" && m.IsGenericMethodDefinition && m.GetParameters() is { Length: 8 } p &&
                    p[0].ParameterType.IsGenericType && p[0].ParameterType.GetGenericTypeDefinition() == typeof(Memory<>) &&
                    p[6].ParameterType == typeof(bool));
                return method?.MakeGenericMethod(typeof(T)).CreateDelegate<NoCopyFactory<T>>();
            }
            catch (Exception e) when (e is ArgumentException or InvalidOperationException or MemberAccessException)
            {
                return null;
            }
        }
    }

    /// <summary>Each member by name, and whether this TorchSharp has it.</summary>
    public static IReadOnlyList<(string Member, bool Found)> Members =>
    [
        ("AutogradContext._node", ContextNode is not null),
        ("AutogradContext._savedVariables", ContextSaved is not null && typeof(IList).IsAssignableFrom(ContextSaved.FieldType)),
        ("Node<T>._outputCache", NodeOfT?.GetField("_outputCache", Private)?.FieldType == typeof(List<Tensor>)),
        ("torch._tensor_generic<float>(Memory<float>, ..., clone)", NoCopy<float>() is not null),
        ("torch._tensor_generic<double>(Memory<double>, ..., clone)", NoCopy<double>() is not null),
    ];
}
