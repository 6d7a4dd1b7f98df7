using System.Diagnostics;
using TorchSharp;

namespace Deq.Experiments;

/// <summary>Where and how a result was produced: printed under every table we write.</summary>
/// <param name="Scale">The scale preset.</param>
/// <param name="Device">The torch device, e.g. "cpu" or "cuda:0 (NVIDIA H100)".</param>
/// <param name="Machine">CPU model and core count.</param>
/// <param name="Commit">Short git commit of the code, or "unknown".</param>
/// <param name="Date">UTC date of the run.</param>
public sealed record RunInfo(ExperimentScale Scale, string Device, string Machine, string Commit, DateTime Date)
{
    /// <summary>Captures the current machine, device and commit.</summary>
    public static RunInfo Capture(ExperimentScale scale, torch.Device? device = null)
    {
        var d = device ?? torch.CPU;
        var deviceName = d.type == DeviceType.CUDA ? $"{d} ({CudaName()})" : "cpu";
        return new RunInfo(scale, deviceName, DescribeMachine(), GitCommit(), DateTime.UtcNow);
    }

    /// <summary>One line for a table footer; <paramref name="wall"/> is the experiment's wall time.</summary>
    public string Footer(TimeSpan wall) =>
        $"Ours: scale `{Scale.ToString().ToLowerInvariant()}`, device {Device}, {Machine}, wall time {wall.TotalMinutes:F1} min, commit `{Commit}`, {Date:yyyy-MM-dd}.";

    static string CudaName() => torch.cuda.is_available() ? "CUDA" : "unavailable";

    static string DescribeMachine()
    {
        var model = "unknown CPU";
        if (File.Exists("/proc/cpuinfo"))
            model = File.ReadLines("/proc/cpuinfo").FirstOrDefault(l => l.StartsWith("model name"))?.Split(':', 2)[1].Trim() ?? model;
        return $"{model}, {Environment.ProcessorCount} cores";
    }

    static string GitCommit()
    {
        try
        {
            using var git = Process.Start(new ProcessStartInfo("git", "rev-parse --short HEAD")
            {
                RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false,
            });
            if (git is null) return "unknown";
            var sha = git.StandardOutput.ReadToEnd().Trim();
            git.WaitForExit();
            return git.ExitCode == 0 && sha.Length > 0 ? sha : "unknown";
        }
        catch (System.ComponentModel.Win32Exception)
        {
            return "unknown";
        }
    }
}
