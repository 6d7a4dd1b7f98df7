// Makes TorchSharp's glue library load on hosts whose libstdc++ predates GLIBCXX_3.4.32
// (Debian 12, Ubuntu 22.04). libLibTorchSharp.so names that version only for
// std::ios_base_library_init, which no relocation binds, so marking the need weak
// (VER_FLG_WEAK) is safe: ld.so then warns instead of refusing to load.
//
// This one file serves two callers: Deq.Core compiles it (DEQ_CORE) for the runtime check,
// and the MSBuild inline task in WeakenGlibcxx.targets compiles it for the build-time patch.
// It therefore sticks to netstandard2.0 APIs.
using System;
using System.Collections.Generic;
using System.IO;
using System.Linq;
using System.Text;

namespace Deq.NativeCompat
{
    /// <summary>One version a library needs from another, e.g. libstdc++.so.6: GLIBCXX_3.4.32.</summary>
    public sealed class VersionNeed
    {
        /// <summary>Creates a need.</summary>
        public VersionNeed(string file, string version, bool weak) { File = file; Version = version; Weak = weak; }

        /// <summary>The library that must provide the version.</summary>
        public string File { get; }

        /// <summary>The version name.</summary>
        public string Version { get; }

        /// <summary>Whether the need is weak (the loader tolerates its absence).</summary>
        public bool Weak { get; }
    }

    /// <summary>Reads and edits the version needs (SHT_GNU_verneed) of an ELF64 little-endian file.</summary>
    public static class ElfVersionNeeds
    {
        /// <summary>The one version TorchSharp 0.107's glue needs beyond Debian 12's libstdc++.</summary>
        public const string MissingGlibcxx = "GLIBCXX_3.4.32";

        const ushort VerFlagWeak = 0x2;
        const uint ShtGnuVerneed = 0x6FFFFFFE;

        static readonly string[] LibraryDirectories =
        {
            "/usr/lib/x86_64-linux-gnu", "/lib/x86_64-linux-gnu", "/usr/lib/aarch64-linux-gnu",
            "/lib/aarch64-linux-gnu", "/usr/lib64", "/lib64", "/usr/lib", "/lib",
        };

        /// <summary>
        /// True when the libstdc++ the loader would pick defines <paramref name="version"/>,
        /// or when this is not Linux (nothing to do there).
        /// </summary>
        public static bool HostLibStdCxxHas(string version)
        {
            if (Path.DirectorySeparatorChar != '/' || !File.Exists("/proc/self/maps")) return true;
            var fromEnv = (Environment.GetEnvironmentVariable("LD_LIBRARY_PATH") ?? "")
                .Split(new[] { ':' }, StringSplitOptions.RemoveEmptyEntries);
            var lib = fromEnv.Concat(LibraryDirectories)
                .Select(d => Path.Combine(d, "libstdc++.so.6"))
                .FirstOrDefault(File.Exists);
            if (lib == null) return false;
            var needle = Encoding.ASCII.GetBytes(version + "\0");
            return IndexOf(File.ReadAllBytes(lib), needle) >= 0;
        }

        /// <summary>The version needs of <paramref name="path"/>, in file order.</summary>
        public static IReadOnlyList<VersionNeed> Read(string path)
        {
            var result = new List<VersionNeed>();
            Walk(File.ReadAllBytes(path), (file, version, flagsOffset, flags) =>
                result.Add(new VersionNeed(file, version, (flags & VerFlagWeak) != 0)));
            return result;
        }

        /// <summary>
        /// Marks each need for one of <paramref name="versions"/> weak, in place and atomically
        /// (temporary file, then replace). Idempotent: returns the needs it changed, empty when none.
        /// </summary>
        public static IReadOnlyList<string> Weaken(string path, params string[] versions)
        {
            var data = File.ReadAllBytes(path);
            var changed = new List<string>();
            Walk(data, (file, version, flagsOffset, flags) =>
            {
                if (!versions.Contains(version) || (flags & VerFlagWeak) != 0) return;
                var weak = (ushort)(flags | VerFlagWeak);
                data[flagsOffset] = (byte)weak;
                data[flagsOffset + 1] = (byte)(weak >> 8);
                changed.Add(file + ":" + version);
            });
            if (changed.Count == 0) return changed;
            var temp = path + ".deq-tmp-" + Guid.NewGuid().ToString("N");
            File.WriteAllBytes(temp, data);
            try
            {
                File.Replace(temp, path, null);
            }
            finally
            {
                if (File.Exists(temp)) File.Delete(temp);
            }
            return changed;
        }

        delegate void NeedVisitor(string file, string version, int flagsOffset, ushort flags);

        static void Walk(byte[] d, NeedVisitor visit)
        {
            if (d.Length < 64 || d[0] != 0x7F || d[1] != (byte)'E' || d[2] != (byte)'L' || d[3] != (byte)'F')
                throw new InvalidDataException("not an ELF file");
            if (d[4] != 2 || d[5] != 1)
                throw new InvalidDataException("only ELF64 little-endian is supported");
            long shoff = (long)U64(d, 0x28);
            int shentsize = U16(d, 0x3A), shnum = U16(d, 0x3C);
            for (int i = 0; i < shnum; i++)
            {
                long sh = shoff + (long)i * shentsize;
                if (U32(d, sh + 4) != ShtGnuVerneed) continue;
                long offset = (long)U64(d, sh + 0x18);
                uint link = U32(d, sh + 0x28), count = U32(d, sh + 0x2C);
                long strtab = (long)U64(d, shoff + link * shentsize + 0x18);
                long vn = offset;
                for (uint n = 0; n < count; n++)
                {
                    int cnt = U16(d, vn + 2);
                    string file = CString(d, strtab + U32(d, vn + 4));
                    long va = vn + U32(d, vn + 8);
                    for (int a = 0; a < cnt; a++)
                    {
                        visit(file, CString(d, strtab + U32(d, va + 8)), (int)(va + 4), (ushort)U16(d, va + 4));
                        uint nextAux = U32(d, va + 12);
                        if (nextAux == 0) break;
                        va += nextAux;
                    }
                    uint next = U32(d, vn + 12);
                    if (next == 0) break;
                    vn += next;
                }
            }
        }

        static int U16(byte[] d, long o) => d[o] | d[o + 1] << 8;
        static uint U32(byte[] d, long o) => (uint)(U16(d, o) | U16(d, o + 2) << 16);
        static ulong U64(byte[] d, long o) => U32(d, o) | (ulong)U32(d, o + 4) << 32;

        static string CString(byte[] d, long o)
        {
            long end = o;
            while (d[end] != 0) end++;
            return Encoding.ASCII.GetString(d, (int)o, (int)(end - o));
        }

        static int IndexOf(byte[] haystack, byte[] needle)
        {
            for (int i = 0; i + needle.Length <= haystack.Length; i++)
            {
                if (haystack[i] != needle[0]) continue;
                int j = 1;
                while (j < needle.Length && haystack[i + j] == needle[j]) j++;
                if (j == needle.Length) return i;
            }
            return -1;
        }
    }

#if !DEQ_CORE
    /// <summary>MSBuild task: weakens the GLIBCXX_3.4.32 need of each given glue library, if the host lacks it.</summary>
    public class WeakenGlibcxxNeed : Microsoft.Build.Utilities.Task
    {
        /// <summary>Candidate libLibTorchSharp.so files; missing ones are skipped.</summary>
        [Microsoft.Build.Framework.Required]
        public Microsoft.Build.Framework.ITaskItem[] Libraries { get; set; } = new Microsoft.Build.Framework.ITaskItem[0];

        public override bool Execute()
        {
            if (ElfVersionNeeds.HostLibStdCxxHas(ElfVersionNeeds.MissingGlibcxx))
            {
                Log.LogMessage(Microsoft.Build.Framework.MessageImportance.Low,
                    "Deq: host libstdc++ has " + ElfVersionNeeds.MissingGlibcxx + "; TorchSharp glue left as shipped.");
                return true;
            }
            foreach (var path in Libraries.Select(l => l.ItemSpec).Distinct().Where(File.Exists))
            {
                try
                {
                    var changed = ElfVersionNeeds.Weaken(path, ElfVersionNeeds.MissingGlibcxx);
                    if (changed.Count > 0)
                        Log.LogMessage(Microsoft.Build.Framework.MessageImportance.High,
                            "Deq: host libstdc++ lacks " + ElfVersionNeeds.MissingGlibcxx + "; marked the need weak in " + path);
                }
                catch (Exception e) when (e is IOException || e is UnauthorizedAccessException)
                {
                    Log.LogWarning("Deq: could not patch " + path + ": " + e.Message);
                }
            }
            return !Log.HasLoggedErrors;
        }
    }
#endif
}
