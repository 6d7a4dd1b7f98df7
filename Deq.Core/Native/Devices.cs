using TorchSharp;

namespace Deq.Native;

/// <summary>
/// Device selection: CUDA when available, otherwise the CPU; overridable by the user with
/// <see cref="Variable"/> or an explicit name. Everything in Deq creates tensors on the device of
/// its inputs or modules, so choosing here is enough.
/// </summary>
public static class Devices
{
    /// <summary>Environment variable: auto (default), cpu, cuda or cuda:N.</summary>
    public const string Variable = "DEQ_DEVICE";

    /// <summary>The device named by <see cref="Variable"/>, or auto-selected when it is unset.</summary>
    public static torch.Device Default =>
        Parse(Environment.GetEnvironmentVariable(Variable) is { Length: > 0 } name ? name : "auto");

    /// <summary>
    /// "auto" (CUDA if available, else CPU), "cpu", "cuda" or "cuda:N". Asking for CUDA where it is
    /// not available is an error that says why and how to get it, not a crash inside libtorch.
    /// </summary>
    public static torch.Device Parse(string name)
    {
        var n = name.Trim().ToLowerInvariant();
        if (n == "auto") return CudaAvailable() ? torch.CUDA : torch.CPU;
        if (n == "cpu") return torch.CPU;
        if (n == "cuda" || n.StartsWith("cuda:"))
        {
            if (!CudaAvailable())
                throw new ArgumentException(
                    $"device '{name}' requested, but CUDA is not available: this build references the CPU libtorch " +
                    "(build with -p:DeqDevice=cuda against a feed that serves TorchSharp-cuda-*), or no GPU/driver is present.");
            if (n == "cuda") return torch.CUDA;
            if (int.TryParse(n[5..], out var index) && index >= 0 && index < torch.cuda.device_count())
                return torch.device(DeviceType.CUDA, index);
            throw new ArgumentException($"device '{name}': there are {torch.cuda.device_count()} CUDA device(s).");
        }
        throw new ArgumentException($"unknown device '{name}'; use auto, cpu, cuda or cuda:N.");
    }

    static bool CudaAvailable()
    {
        try
        {
            return torch.cuda.is_available();
        }
        catch (Exception e) when (e is DllNotFoundException or NotSupportedException or TypeInitializationException)
        {
            return false;
        }
    }
}
