using System.Text;
using TorchSharp;
using static TorchSharp.torch;

namespace Deq.Training;

/// <summary>A tensor as bytes (dtype, shape, raw data) and back, for checkpoint sections.</summary>
public static class TensorBytes
{
    /// <summary>Serialises a copy of the tensor's values (any device).</summary>
    public static byte[] Of(Tensor t)
    {
        using var cpu = t.detach().cpu().contiguous();
        var ms = new MemoryStream();
        using (var w = new BinaryWriter(ms, Encoding.UTF8, leaveOpen: true))
        {
            w.Write((int)cpu.dtype);
            w.Write(cpu.shape.Length);
            foreach (var d in cpu.shape) w.Write(d);
            var data = cpu.bytes;
            w.Write(data.Length);
            w.Write(data);
        }
        return ms.ToArray();
    }

    /// <summary>The tensor <see cref="Of"/> wrote, on <paramref name="device"/> (default CPU).</summary>
    public static Tensor From(byte[] bytes, Device? device = null)
    {
        using var r = new BinaryReader(new MemoryStream(bytes), Encoding.UTF8);
        var dtype = (ScalarType)r.ReadInt32();
        var shape = new long[r.ReadInt32()];
        for (int i = 0; i < shape.Length; i++) shape[i] = r.ReadInt64();
        var data = r.ReadBytes(r.ReadInt32());
        var t = torch.empty(shape, dtype: dtype);
        if (data.Length != t.NumberOfElements * t.ElementSize)
            throw new InvalidDataException($"tensor section holds {data.Length} bytes, a {dtype} tensor of shape [{string.Join(", ", shape)}] needs {t.NumberOfElements * t.ElementSize}.");
        t.bytes = data;
        if (device is null || device.type == DeviceType.CPU) return t;
        using (t) return t.to(device);
    }
}
