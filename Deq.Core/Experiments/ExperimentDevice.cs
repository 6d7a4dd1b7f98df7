using TorchSharp;

namespace Deq.Experiments;

/// <summary>The device experiments run on: the first CUDA device when there is one, else the CPU.</summary>
public static class ExperimentDevice
{
    /// <summary>cuda:0 when available, else cpu.</summary>
    public static torch.Device Default => torch.cuda.is_available() ? torch.CUDA : torch.CPU;

    /// <summary>Waits for queued GPU work (a no-op on the CPU), so wall-clock timings are honest.</summary>
    public static void Synchronize(torch.Device device)
    {
        if (device.type == DeviceType.CUDA) torch.cuda.synchronize(device);
    }
}
