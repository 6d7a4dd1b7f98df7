using System.Runtime.InteropServices;

namespace Deq.Native;

/// <summary>
/// Makes freed tensor memory go back to the operating system. glibc's malloc raises its mmap threshold
/// each time a large block is freed (up to 32 MiB), after which tensor-sized blocks come from the heap,
/// where fragmentation keeps them: a DEQ's RSS then grows with solver iterations although its live
/// tensors do not. Fixing the threshold makes every block above it an mmap that free() unmaps. Deq.Core's
/// module initializer applies this, so the CLI, experiments, fsi and notebooks all get it.
/// The price is that every such block is fresh memory the kernel must fault in and zero, page by page
/// (a DEQ step ran 1.6x slower than on glibc's heap); so it also asks libtorch's CPU allocator to advise
/// transparent huge pages for blocks of 2 MiB and more, which faults them in 2 MiB at a time.
/// </summary>
public static class FreedMemory
{
    /// <summary>Environment variable: "keep" leaves the allocator as the process has it; a number of bytes sets the threshold.</summary>
    public const string Variable = "DEQ_MMAP_THRESHOLD";

    /// <summary>Blocks at or above this size are mmapped and returned on free (a tenth of a small z; large enough
    /// that the many small bookkeeping tensors stay on the heap).</summary>
    public const int DefaultThresholdBytes = 128 * 1024;

    /// <summary>c10's switch (read once, at libtorch's first CPU allocation): "1" makes alloc_cpu madvise
    /// MADV_HUGEPAGE on blocks of 2 MiB and more. A value the user set is left as it is.</summary>
    public const string HugePagesVariable = "THP_MEM_ALLOC_ENABLE";

    const string KernelHugePages = "/sys/kernel/mm/transparent_hugepage/enabled";

    const int MmapThreshold = -3;   // M_MMAP_THRESHOLD in glibc's malloc.h
    const int TrimThreshold = -1;   // M_TRIM_THRESHOLD

    static int _applied;

    /// <summary>What <see cref="Apply"/> did, for logs and benchmarks ("mmap threshold 131072 B", "left as is: ...").</summary>
    public static string Status { get; private set; } = "not applied";

    /// <summary>
    /// The mmap threshold <see cref="Apply"/> set, or null where it left the allocator alone. A fresh CPU block at or
    /// above it is new pages the kernel faults in (about 0.5 us per KiB on a virtual machine), so code that makes such
    /// a block every step is better off writing into one it keeps.
    /// </summary>
    public static int? ThresholdBytes { get; private set; }

    /// <summary>
    /// Sets glibc's mmap and trim thresholds once per process (Linux with glibc only). It leaves the allocator
    /// alone when the user set glibc's own MALLOC_MMAP_THRESHOLD_ / MALLOC_TRIM_THRESHOLD_ or
    /// <see cref="Variable"/>=keep. Idempotent; returns <see cref="Status"/>.
    /// </summary>
    public static string Apply()
    {
        if (Interlocked.Exchange(ref _applied, 1) == 1) return Status;
        Status = Decide();
        return Status;
    }

    static string Decide()
    {
        if (!OperatingSystem.IsLinux()) return "left as is: not Linux";
        var requested = Environment.GetEnvironmentVariable(Variable);
        if (string.Equals(requested, "keep", StringComparison.OrdinalIgnoreCase)) return $"left as is: {Variable}=keep";
        if (Environment.GetEnvironmentVariable("MALLOC_MMAP_THRESHOLD_") is { Length: > 0 } own)
        {
            if (int.TryParse(own, out var users)) ThresholdBytes = users;
            return $"left as is: MALLOC_MMAP_THRESHOLD_={own} set by the user";
        }
        int threshold = DefaultThresholdBytes;
        if (requested is { Length: > 0 } && (!int.TryParse(requested, out threshold) || threshold < 4096))
            return $"left as is: {Variable}='{requested}' is neither 'keep' nor a number of bytes >= 4096";
        try
        {
            if (mallopt(MmapThreshold, threshold) != 1) return "left as is: mallopt refused the mmap threshold";
            if (Environment.GetEnvironmentVariable("MALLOC_TRIM_THRESHOLD_") is not { Length: > 0 }) mallopt(TrimThreshold, threshold);
            ThresholdBytes = threshold;
            return $"mmap threshold {threshold} B; {AdviseHugePages()}";
        }
        catch (Exception e) when (e is DllNotFoundException or EntryPointNotFoundException)
        {
            return "left as is: no glibc mallopt (another C library)";
        }
    }

    static string AdviseHugePages()
    {
        if (Environment.GetEnvironmentVariable(HugePagesVariable) is { Length: > 0 } own) return $"huge pages as the user set them ({HugePagesVariable}={own})";
        string kernel;
        try { kernel = File.ReadAllText(KernelHugePages); }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException) { return "no huge pages (the kernel has no transparent huge pages)"; }
        if (kernel.Contains("[never]", StringComparison.Ordinal)) return "no huge pages (off in the kernel)";
        bool loaded = LibTorchLoaded();
        // setenv, not Environment.SetEnvironmentVariable: .NET keeps its own copy, c10 reads the C environment.
        if (setenv(HugePagesVariable, "1", 0) != 0) return "huge pages not advised (setenv failed)";
        if (!loaded) return "huge pages advised for blocks of 2 MiB and more";
        // c10 reads the switch once, at its first allocation: loaded is not the same as decided (the CLI's
        // set_num_threads loads libtorch and allocates nothing), so ask the kernel what a fresh block got.
        return HugePagesInEffect() switch
        {
            true => "huge pages advised for blocks of 2 MiB and more",
            false => "huge pages NOT in effect: libtorch allocated before Deq.Core loaded (use a Deq type before the first tensor)",
            null => "huge pages advised for blocks of 2 MiB and more, if libtorch (loaded first) had not allocated yet: could not check",
        };
    }

    /// <summary>
    /// Whether libtorch advises huge pages for its large CPU blocks in this process: a fresh 4 MiB tensor's mapping
    /// carries the kernel's "hg" flag (MADV_HUGEPAGE) in /proc/self/smaps. Null where that cannot be read (not Linux).
    /// </summary>
    public static bool? HugePagesInEffect()
    {
        if (!OperatingSystem.IsLinux()) return null;
        try
        {
            using var probe = TorchSharp.torch.empty(1 << 20, dtype: TorchSharp.torch.ScalarType.Float32);
            return MappingAdvisedHuge(Address(probe.bytes));
        }
        // (This runs in Deq.Core's initializer, where any exception would make every Deq type unusable.)
        catch (Exception) { return null; }
    }

    static unsafe ulong Address(ReadOnlySpan<byte> memory)
    {
        fixed (byte* p = memory) return (ulong)p;
    }

    // c10 reads the variable once, at its first allocation; loaded before us, it may have read it already.
    static bool LibTorchLoaded()
    {
        try { return File.ReadLines("/proc/self/maps").Any(l => l.EndsWith("/libtorch_cpu.so", StringComparison.Ordinal)); }
        catch (IOException) { return false; }
    }

    // The VmFlags of the smaps entry whose range holds `address` include "hg".
    static bool? MappingAdvisedHuge(ulong address)
    {
        bool inside = false;
        foreach (var line in File.ReadLines("/proc/self/smaps"))
        {
            if (line.Length > 0 && char.IsAsciiHexDigit(line[0]) && line.IndexOf('-') is var dash and > 0 && line.IndexOf(' ') is var space and > 0 && dash < space)
            {
                ulong from = ulong.Parse(line.AsSpan(0, dash), System.Globalization.NumberStyles.HexNumber);
                ulong to = ulong.Parse(line.AsSpan(dash + 1, space - dash - 1), System.Globalization.NumberStyles.HexNumber);
                inside = from <= address && address < to;
            }
            else if (inside && line.StartsWith("VmFlags:", StringComparison.Ordinal))
                return line.Split(' ', StringSplitOptions.RemoveEmptyEntries).Contains("hg");
        }
        return null;
    }

    /// <summary>
    /// Returns the heap's free memory to the operating system now (glibc's malloc_trim), so that a measurement
    /// that follows sees its own allocations as resident-memory growth, not reuse of what earlier work freed.
    /// False where there is no glibc.
    /// </summary>
    public static bool Trim()
    {
        if (!OperatingSystem.IsLinux()) return false;
        try { return malloc_trim(UIntPtr.Zero) == 1; }
        catch (Exception e) when (e is DllNotFoundException or EntryPointNotFoundException) { return false; }
    }

    [DllImport("libc.so.6", EntryPoint = "mallopt")]
    static extern int mallopt(int param, int value);

    [DllImport("libc.so.6", EntryPoint = "setenv")]
    static extern int setenv([MarshalAs(UnmanagedType.LPUTF8Str)] string name, [MarshalAs(UnmanagedType.LPUTF8Str)] string value, int overwrite);

    [DllImport("libc.so.6", EntryPoint = "malloc_trim")]
    static extern int malloc_trim(UIntPtr pad);
}
