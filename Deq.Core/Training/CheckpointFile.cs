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
    const string TempInfix = ".deq-tmp-";
    const string Restart = "Restore it from a copy, or start afresh without resuming (replacing it needs --force, TrainOptions.Overwrite).";

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
        var temp = Path.Combine(dir, $"{Path.GetFileName(path)}{TempInfix}{Guid.NewGuid():N}");
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
        if (Directory.Exists(path)) throw new InvalidDataException($"checkpoint {path} is a directory, not a checkpoint file.");
        if (!File.Exists(path)) throw new FileNotFoundException($"checkpoint {path} does not exist.", path);
        var all = File.ReadAllBytes(path);
        if (all.Length < HeaderBytes || !all.AsSpan(0, 8).SequenceEqual(Magic))
            throw new InvalidDataException($"checkpoint {path} is not a Deq checkpoint (no DEQCKPT header; {all.Length} bytes). {Restart}");
        int version = BitConverter.ToInt32(all, 8);
        if (version != Version)
            throw new InvalidDataException($"checkpoint {path} has format version {version}; this build reads version {Version}. Resume it with the Deq build that wrote it, or start afresh.");
        long length = BitConverter.ToInt64(all, 12);
        long actual = all.Length - HeaderBytes;
        if (length != actual)
            throw new InvalidDataException($"checkpoint {path} is {(actual < length ? "truncated" : "padded")}: the header promises {length} payload bytes, " +
                $"the file has {actual} ({Math.Abs(actual - length)} {(actual < length ? "missing" : "extra")}). {Restart}");
        var payload = all.AsSpan(HeaderBytes);
        if (!SHA256.HashData(payload).AsSpan().SequenceEqual(all.AsSpan(20, 32)))
            throw new InvalidDataException($"checkpoint {path} is corrupted: the payload's sha256 does not match its header. {Restart}");
        try
        {
            using var r = new BinaryReader(new MemoryStream(all, HeaderBytes, (int)length, writable: false), Encoding.UTF8);
            var sections = new Dictionary<string, byte[]>();
            int count = r.ReadInt32();
            for (int i = 0; i < count; i++)
            {
                var name = r.ReadString();
                long size = r.ReadInt64();
                if (size < 0 || size > r.BaseStream.Length - r.BaseStream.Position) throw new EndOfStreamException($"section '{name}' claims {size} bytes");
                sections[name] = r.ReadBytes((int)size);
            }
            return sections;
        }
        catch (Exception e) when (e is EndOfStreamException or FormatException or DecoderFallbackException or ArgumentException)
        {
            // Only a file written by something else with a valid header gets here (the sha256 matched).
            throw new InvalidDataException($"checkpoint {path} has a valid header but an unreadable payload ({e.Message}). {Restart}", e);
        }
    }

    /// <summary>
    /// Deletes the temporary files an interrupted <see cref="Write"/> of <paramref name="path"/> left behind
    /// (a process killed between creating and renaming its temporary file). Call it before a run, not while
    /// another process writes the same checkpoint.
    /// </summary>
    /// <returns>The number of files removed.</returns>
    public static int RemoveStaleTemporaries(string path)
    {
        var dir = Path.GetDirectoryName(Path.GetFullPath(path))!;
        if (!Directory.Exists(dir)) return 0;
        int removed = 0;
        foreach (var stale in Directory.EnumerateFiles(dir, Path.GetFileName(path) + TempInfix + "*"))
        {
            File.Delete(stale);
            removed++;
        }
        return removed;
    }

    /// <summary>
    /// Checks now, before any training, that <see cref="Write"/> will be able to create <paramref name="path"/>:
    /// creates its directory if needed and writes and deletes a probe file there. Failures are an
    /// <see cref="IOException"/> naming the directory.
    /// </summary>
    public static void EnsureWritable(string path)
    {
        var full = Path.GetFullPath(path);
        if (Directory.Exists(full)) throw new IOException($"checkpoint path {path} is a directory; give a file path such as {Path.Combine(path, "run.ckpt")}.");
        var dir = Path.GetDirectoryName(full)!;
        for (var up = dir; !string.IsNullOrEmpty(up); up = Path.GetDirectoryName(up))
            if (File.Exists(up))
                throw new IOException($"checkpoint directory {dir} is not writable: {up} is a file, not a folder; pick another checkpoint path.");
        try
        {
            Directory.CreateDirectory(dir);
            var probe = Path.Combine(dir, $"{Path.GetFileName(full)}{TempInfix}{Guid.NewGuid():N}");
            using (new FileStream(probe, FileMode.CreateNew, FileAccess.Write, FileShare.None, 1, FileOptions.DeleteOnClose)) { }
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new IOException($"checkpoint directory {dir} is not writable ({e.Message}); pick another checkpoint path.", e);
        }
    }
}
