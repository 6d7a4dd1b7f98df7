namespace Deq.Training;

/// <summary>Resident memory of this process, from /proc/self/status on Linux (null elsewhere).</summary>
/// <param name="RssBytes">Current resident set size (VmRSS).</param>
/// <param name="PeakRssBytes">Peak resident set size (VmHWM).</param>
public sealed record ProcessMemory(long? RssBytes, long? PeakRssBytes)
{
    /// <summary>Reads the current figures; never throws (unreadable: nulls).</summary>
    public static ProcessMemory Now()
    {
        if (!OperatingSystem.IsLinux()) return new(null, null);
        try
        {
            long? rss = null, peak = null;
            foreach (var line in File.ReadLines("/proc/self/status"))
            {
                if (line.StartsWith("VmRSS:")) rss = Kilobytes(line);
                else if (line.StartsWith("VmHWM:")) peak = Kilobytes(line);
            }
            return new(rss, peak);
        }
        catch (IOException) { return new(null, null); }
    }

    /// <summary>
    /// Before measuring: finalise garbage (TorchSharp frees some tensors in finalizers) and return the heap's free
    /// memory to the operating system, so that what follows shows its own allocations as resident-memory growth.
    /// </summary>
    public static void Settle()
    {
        for (int i = 0; i < 2; i++)
        {
            GC.Collect();
            GC.WaitForPendingFinalizers();
        }
        Deq.Native.FreedMemory.Trim();
    }

    /// <summary>Resets the peak (VmHWM) to the current resident size by writing 5 to /proc/self/clear_refs (Linux 4.0+); false, with why, where it cannot.</summary>
    public static bool TryResetPeak(out string? error)
    {
        try
        {
            File.WriteAllText("/proc/self/clear_refs", "5");
            error = null;
            return true;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            error = e.Message;
            return false;
        }
    }

    // "VmRSS:	  123456 kB"
    static long? Kilobytes(string line)
    {
        var parts = line.Split((char[]?)null, StringSplitOptions.RemoveEmptyEntries);
        return parts.Length >= 2 && long.TryParse(parts[1], out var kb) ? kb * 1024 : null;
    }
}
