using TorchSharp;

namespace Deq.Experiments;

/// <summary>The device experiments run on, and honest timing on it.</summary>
public static class ExperimentDevice
{
    /// <summary><see cref="Deq.Native.Devices.Default"/>: DEQ_DEVICE if set, else CUDA when available, else the CPU.</summary>
    public static torch.Device Default => Deq.Native.Devices.Default;

    /// <summary>Waits for queued GPU work (a no-op on the CPU), so wall-clock timings are honest.</summary>
    public static void Synchronize(torch.Device device)
    {
        if (device.type == DeviceType.CUDA) torch.cuda.synchronize(device);
    }
}
