using System.Runtime.CompilerServices;
using Deq.NativeCompat;

namespace Deq.Native;

/// <summary>
/// Makes TorchSharp's native glue loadable before anything in Deq touches a tensor.
/// The build already patches the NuGet cache and bin/; this covers hosts where Deq.Core.dll is
/// used from somewhere the build never saw (a copied folder, a notebook kernel, fsi).
/// </summary>
public static class TorchRuntime
{
    static int _ensured;

#pragma warning disable CA2255 // a library initializer is the point: it must run before TorchSharp loads
    [ModuleInitializer]
    internal static void OnLoad()
    {
        EnsureLoadable();
        FreedMemory.Apply();
    }
#pragma warning restore CA2255

    /// <summary>
    /// Marks the glue's unused GLIBCXX_3.4.32 need weak wherever TorchSharp will look for it,
    /// if the host libstdc++ lacks that version. Idempotent and cheap after the first call.
    /// </summary>
    /// <returns>The libraries it patched in this call (empty when nothing needed doing).</returns>
    public static IReadOnlyList<string> EnsureLoadable()
    {
        if (Interlocked.Exchange(ref _ensured, 1) == 1 || !OperatingSystem.IsLinux()) return [];
        if (ElfVersionNeeds.HostLibStdCxxHas(ElfVersionNeeds.MissingGlibcxx)) return [];
        var patched = new List<string>();
        foreach (var glue in CandidateGlueFiles())
        {
            try
            {
                if (ElfVersionNeeds.Weaken(glue, ElfVersionNeeds.MissingGlibcxx).Count > 0) patched.Add(glue);
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                Console.Error.WriteLine($"Deq: could not patch {glue}: {e.Message}");
            }
        }
        foreach (var p in patched)
            Console.Error.WriteLine($"Deq: host libstdc++ lacks {ElfVersionNeeds.MissingGlibcxx}; marked that need weak in {p}");
        return patched;
    }

    static IEnumerable<string> CandidateGlueFiles()
    {
        const string glue = "libLibTorchSharp.so";
        var dirs = new List<string> { AppContext.BaseDirectory };
        var here = Path.GetDirectoryName(typeof(TorchRuntime).Assembly.Location);
        if (!string.IsNullOrEmpty(here)) dirs.Add(here);
        var torchSharp = Path.GetDirectoryName(typeof(TorchSharp.torch).Assembly.Location);
        if (!string.IsNullOrEmpty(torchSharp))
        {
            // Loaded from the NuGet cache: .../torchsharp/<v>/lib/<tfm>/TorchSharp.dll
            dirs.Add(torchSharp);
            dirs.Add(Path.Combine(torchSharp, "cpu"));
            dirs.Add(Path.GetFullPath(Path.Combine(torchSharp, "..", "..", "runtimes", "linux-x64", "native")));
        }
        return dirs.Select(d => Path.Combine(d, glue)).Where(File.Exists).Distinct();
    }
}
