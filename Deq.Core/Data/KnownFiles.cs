using System.Security.Cryptography;

namespace Deq.Data;

/// <summary>
/// Published corpus files by name and size, with their sha256. A file with a known name and size is
/// verified before reading; other files (WikiText-103, edited copies) are read without a check.
/// </summary>
public static class KnownFiles
{
    /// <summary>One known file.</summary>
    /// <param name="Name">File name without directory.</param>
    /// <param name="Bytes">Exact size.</param>
    /// <param name="Sha256">Lower-case hex digest.</param>
    /// <param name="Tokens">Token count including one &lt;eos&gt; per line.</param>
    public sealed record Entry(string Name, long Bytes, string Sha256, long Tokens);

    /// <summary>PTB (Mikolov's simple-examples) and WikiText-2 v1 (tokenised).</summary>
    public static IReadOnlyList<Entry> All { get; } =
    [
        new("ptb.train.txt", 5_101_618, "fcea919f6cf83f35d4d00c6cbf08040d13d4155226340912e2fef9c9c4102cbf", 929_589),
        new("ptb.valid.txt", 399_782, "c9fe6985fe0d4ccb578183407d7668fc6066c20700cb4cf87d8ff1cc34df1bf2", 73_760),
        new("ptb.test.txt", 449_945, "dd65dff31e70846b2a6030a87482edcd5d199130cdcfa1f3dccbb033728deee0", 82_430),
        new("wiki.train.tokens", 10_797_148, "9e9fa1ad55b1c2c95b08e37dd8e653f638fac2c6de904b79e813611eefbc985f", 2_088_628),
        new("wiki.valid.tokens", 1_121_681, "f0737ed31fc1329026e95cb8b98e19c2a182c39c240ab909dc31abf2f8af58e8", 217_646),
        new("wiki.test.tokens", 1_256_449, "d790b833ef8cf03a90db7bf1271b7520b83c45ce07ba3c1a9699df81e239eca0", 245_569),
    ];

    /// <summary>The entry matching this file's name (or <paramref name="name"/>) and size, if any.</summary>
    public static Entry? Find(string path, string? name = null)
    {
        name ??= Path.GetFileName(path);
        var bytes = new FileInfo(path).Length;
        return All.FirstOrDefault(e => e.Name == name && e.Bytes == bytes);
    }

    /// <summary>Lower-case hex sha256 of a file, streamed.</summary>
    public static string Sha256Of(string path)
    {
        using var s = File.OpenRead(path);
        return Convert.ToHexStringLower(SHA256.HashData(s));
    }

    /// <summary>
    /// Checks a file against the table when its name and size are known; a mismatch is an
    /// <see cref="InvalidDataException"/> naming the file and both digests.
    /// </summary>
    /// <param name="path">The file to check.</param>
    /// <param name="name">The name to look it up by (default: its own; a temporary file passes its final name).</param>
    /// <returns>True when the file was known and matched, false when it is not in the table.</returns>
    public static bool Verify(string path, string? name = null)
    {
        var entry = Find(path, name);
        if (entry is null) return false;
        var actual = Sha256Of(path);
        if (actual != entry.Sha256)
            throw new InvalidDataException(
                $"{path}: sha256 mismatch for {entry.Name} ({entry.Bytes:N0} bytes): expected {entry.Sha256}, actual {actual}. " +
                "The file is damaged or a different version; download it again.");
        return true;
    }
}
