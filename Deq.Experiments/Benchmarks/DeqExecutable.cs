namespace Deq.Experiments.Benchmarks;

/// <summary>
/// Finds the `deq` command-line program for fresh-process measurements: <see cref="Variable"/>, next to
/// the running program (inside `deq` itself), or Deq.Cli/bin/&lt;config&gt;/net10.0/&lt;rid&gt;/ of the repository
/// that contains the current directory or Deq.Experiments.dll (notebooks run in Deq.Notebooks, tests in their bin/).
/// </summary>
public static class DeqExecutable
{
    /// <summary>Environment variable naming deq (the apphost) or deq.dll explicitly.</summary>
    public const string Variable = "DEQ_CLI_PATH";

    /// <summary>
    /// The program to start and the arguments that precede deq's own ("dotnet deq.dll" when only the dll exists).
    /// Throws <see cref="InvalidOperationException"/> listing where it looked.
    /// </summary>
    public static (string File, string[] Prefix) Locate()
    {
        var looked = new List<string>();
        if (Environment.GetEnvironmentVariable(Variable) is { Length: > 0 } explicitPath)
        {
            var found = FromPath(explicitPath);
            return found ?? throw new InvalidOperationException($"{Variable}={explicitPath} is neither deq nor deq.dll that exists.");
        }
        foreach (var dir in new[] { AppContext.BaseDirectory, Path.GetDirectoryName(typeof(DeqExecutable).Assembly.Location) ?? "" })
        {
            if (dir.Length == 0) continue;
            looked.Add(dir);
            if (FromPath(Path.Combine(dir, "deq.dll")) is { } here) return here;
        }
        foreach (var root in RepositoryRoots())
        {
            var bin = Path.Combine(root, "Deq.Cli", "bin");
            looked.Add(bin);
            if (!Directory.Exists(bin)) continue;
            // Newest build wins (Release or Debug, whichever was built last).
            var newest = Directory.EnumerateFiles(bin, "deq.dll", SearchOption.AllDirectories)
                .Where(p => p.Contains($"{Path.DirectorySeparatorChar}net10.0{Path.DirectorySeparatorChar}"))
                .OrderByDescending(File.GetLastWriteTimeUtc).FirstOrDefault();
            if (newest is not null && FromPath(newest) is { } built) return built;
        }
        throw new InvalidOperationException(
            $"Cannot find the deq program (Deq.Cli) for the fresh-process memory probe. Build it (`dotnet build -c Release Deq.Cli` " +
            $"at the repository root) or set {Variable}. Looked in: {string.Join("; ", looked.Distinct())}.");
    }

    // deq.dll -> its apphost when present, else `dotnet deq.dll`.
    static (string, string[])? FromPath(string path)
    {
        var full = Path.GetFullPath(path);
        if (File.Exists(full) && !full.EndsWith(".dll", StringComparison.OrdinalIgnoreCase)) return (full, []);
        var dll = full.EndsWith(".dll", StringComparison.OrdinalIgnoreCase) ? full : full + ".dll";
        if (!File.Exists(dll)) return null;
        var host = Path.Combine(Path.GetDirectoryName(dll)!, OperatingSystem.IsWindows() ? "deq.exe" : "deq");
        if (File.Exists(host)) return (host, []);
        return (Environment.GetEnvironmentVariable("DOTNET_HOST_PATH") is { Length: > 0 } dotnet ? dotnet : "dotnet", [dll]);
    }

    // Folders above the current directory and above this assembly that hold Deq.Cli/Deq.Cli.csproj.
    static IEnumerable<string> RepositoryRoots()
    {
        var starts = new[] { Directory.GetCurrentDirectory(), Path.GetDirectoryName(typeof(DeqExecutable).Assembly.Location) ?? "", AppContext.BaseDirectory };
        var seen = new HashSet<string>();
        foreach (var start in starts.Where(s => s.Length > 0))
            for (var d = new DirectoryInfo(start); d is not null; d = d.Parent)
                if (File.Exists(Path.Combine(d.FullName, "Deq.Cli", "Deq.Cli.csproj")) && seen.Add(d.FullName))
                    yield return d.FullName;
    }
}
