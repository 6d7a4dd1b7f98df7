using System.Security.Cryptography;
using System.Text;

namespace Deq.Training;

/// <summary>
/// The checkpoint container: named byte sections behind a header of magic, version, payload length and
/// the payload's sha256. Reading checks all four before any section reaches TorchSharp, so a truncated or
/// corrupted file is a clear error, never a crash inside libtorch. Writing is atomic: a temporary file in
/// the same directory, flushed to disk, then renamed over the target.
/// </summary>
public static class CheckpointFile
{
    static readonly byte[] Magic = "DEQCKPT\n"u8.ToArray();
    const int Version = 1;
    const int HeaderBytes = 8 + 4 + 8 + 32;

    /// <summary>Writes the sections to <paramref name="path"/> atomically; on failure the old file is untouched.</summary>
    public static void Write(string path, IReadOnlyList<(string Name, byte[] Data)> sections)
    {
        var payload = new MemoryStream();
        using (var w = new BinaryWriter(payload, Encoding.UTF8, leaveOpen: true))
        {
            w.Write(sections.Count);
            foreach (var (name, data) in sections)
            {
                w.Write(name);
                w.Write((long)data.Length);
                w.Write(data);
            }
        }
        var bytes = payload.GetBuffer().AsSpan(0, (int)payload.Length);
        var dir = Path.GetDirectoryName(Path.GetFullPath(path))!;
        Directory.CreateDirectory(dir);
        var temp = Path.Combine(dir, $"{Path.GetFileName(path)}.deq-tmp-{Guid.NewGuid():N}");
        try
        {
            using (var f = new FileStream(temp, FileMode.CreateNew, FileAccess.Write, FileShare.None))
            {
                f.Write(Magic);
                Span<byte> head = stackalloc byte[12];
                BitConverter.TryWriteBytes(head[..4], Version);
                BitConverter.TryWriteBytes(head[4..], (long)bytes.Length);
                f.Write(head);
                f.Write(SHA256.HashData(bytes));
                f.Write(bytes);
                f.Flush(flushToDisk: true);
            }
            File.Move(temp, path, overwrite: true);
        }
        finally
        {
            if (File.Exists(temp)) File.Delete(temp);
        }
    }

    /// <summary>Reads and verifies a checkpoint; any damage is an <see cref="InvalidDataException"/> naming the file and the fault.</summary>
    public static IReadOnlyDictionary<string, byte[]> Read(string path)
    {
        if (!File.Exists(path)) throw new FileNotFoundException($"checkpoint {path} does not exist.", path);
        var all = File.ReadAllBytes(path);
        if (all.Length < HeaderBytes || !all.AsSpan(0, 8).SequenceEqual(Magic))
            throw new InvalidDataException($"checkpoint {path} is not a Deq checkpoint (no DEQCKPT header; {all.Length} bytes).");
        int version = BitConverter.ToInt32(all, 8);
        if (version != Version)
            throw new InvalidDataException($"checkpoint {path} has format version {version}; this build reads version {Version}.");
        long length = BitConverter.ToInt64(all, 12);
        long actual = all.Length - HeaderBytes;
        if (length != actual)
            throw new InvalidDataException($"checkpoint {path} is truncated or padded: the header promises {length} payload bytes, the file has {actual}.");
        var payload = all.AsSpan(HeaderBytes);
        if (!SHA256.HashData(payload).AsSpan().SequenceEqual(all.AsSpan(20, 32)))
            throw new InvalidDataException($"checkpoint {path} is corrupted: the payload's sha256 does not match its header.");
        using var r = new BinaryReader(new MemoryStream(all, HeaderBytes, (int)length, writable: false), Encoding.UTF8);
        var sections = new Dictionary<string, byte[]>();
        int count = r.ReadInt32();
        for (int i = 0; i < count; i++)
        {
            var name = r.ReadString();
            sections[name] = r.ReadBytes(checked((int)r.ReadInt64()));
        }
        return sections;
    }
}
