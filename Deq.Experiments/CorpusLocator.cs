namespace Deq.Experiments;

/// <summary>
/// Where experiments look for a corpus folder (ptb, wikitext-2, wikitext-103), in order:
/// $DEQ_DATA_DIR/NAME, data/NAME under the repository, and ../shared/data/NAME beside it.
/// </summary>
public static class CorpusLocator
{
    /// <summary>Environment variable naming a folder that holds one subfolder per corpus.</summary>
    public const string Variable = "DEQ_DATA_DIR";

    /// <summary>The candidate folders for <paramref name="name"/>, most preferred first.</summary>
    public static IReadOnlyList<string> Candidates(string name)
    {
        var list = new List<string>();
        if (Environment.GetEnvironmentVariable(Variable) is { Length: > 0 } env) list.Add(Path.Combine(env, name));
        if (RepositoryRoot() is { } root)
        {
            list.Add(Path.Combine(root, "data", name));
            list.Add(Path.GetFullPath(Path.Combine(root, "..", "shared", "data", name)));
        }
        return list;
    }

    /// <summary>The first candidate folder that exists, or null (then <see cref="Missing"/> explains).</summary>
    public static string? Find(string name) => Candidates(name).FirstOrDefault(Directory.Exists);

    /// <summary>A sentence for a user without the corpus: where we looked and how to get it.</summary>
    public static string Missing(string name) =>
        $"Corpus '{name}' not found (looked in: {string.Join(", ", Candidates(name))}). " +
        $"Get it with `dotnet run --project Deq.Cli -c Release -- data download --corpus {name} --dir data/{name}` or set {Variable}.";

    /// <summary>The folder holding Deq.sln, searching up from the current directory; null outside the repository.</summary>
    public static string? RepositoryRoot()
    {
        for (var dir = new DirectoryInfo(Environment.CurrentDirectory); dir is not null; dir = dir.Parent)
            if (File.Exists(Path.Combine(dir.FullName, "Deq.sln"))) return dir.FullName;
        return null;
    }
}
