namespace Deq.Data;

/// <summary>The three file names of one corpus format.</summary>
/// <param name="Format">"ptb", "wikitext" or "plain".</param>
/// <param name="Train">Training file name.</param>
/// <param name="Valid">Validation file name.</param>
/// <param name="Test">Test file name.</param>
public sealed record CorpusLayout(string Format, string Train, string Valid, string Test)
{
    /// <summary>Mikolov's PTB: ptb.{train,valid,test}.txt.</summary>
    public static CorpusLayout Ptb { get; } = new("ptb", "ptb.train.txt", "ptb.valid.txt", "ptb.test.txt");

    /// <summary>WikiText-2/103 as published: wiki.{train,valid,test}.tokens.</summary>
    public static CorpusLayout WikiText { get; } = new("wikitext", "wiki.train.tokens", "wiki.valid.tokens", "wiki.test.tokens");

    /// <summary>The renamed files the reference code reads: {train,valid,test}.txt.</summary>
    public static CorpusLayout Plain { get; } = new("plain", "train.txt", "valid.txt", "test.txt");

    /// <summary>Every layout, in the order a directory is probed.</summary>
    public static IReadOnlyList<CorpusLayout> All { get; } = [Ptb, WikiText, Plain];

    /// <summary>The file names, train first.</summary>
    public IReadOnlyList<string> Files => [Train, Valid, Test];

    /// <summary>
    /// The layout of a corpus directory. A missing directory, or a missing file in the layout
    /// found, is a <see cref="FileNotFoundException"/> naming it and giving the download command; a file
    /// given as the directory is an <see cref="ArgumentException"/> naming its folder.
    /// </summary>
    public static CorpusLayout Detect(string dir)
    {
        if (File.Exists(dir))
            throw new ArgumentException($"{dir} is a file; a corpus is the directory that holds its three split files (here: {Path.GetDirectoryName(Path.GetFullPath(dir))}).", nameof(dir));
        if (!Directory.Exists(dir))
            throw new DirectoryNotFoundException($"corpus directory {dir} does not exist. {DownloadHint(dir, null)}");
        var layout = All.FirstOrDefault(l => File.Exists(Path.Combine(dir, l.Train)))
            ?? All.FirstOrDefault(l => l.Files.Any(f => File.Exists(Path.Combine(dir, f))))
            ?? throw new FileNotFoundException(
                $"corpus directory {dir} holds no corpus: expected one of {string.Join("; ", All.Select(l => string.Join(", ", l.Files)))}. " +
                DownloadHint(dir, null));
        foreach (var f in layout.Files)
        {
            var path = Path.Combine(dir, f);
            if (!File.Exists(path))
                throw new FileNotFoundException($"corpus directory {dir} lacks {f} (the {layout.Format} layout needs {string.Join(", ", layout.Files)}). {DownloadHint(dir, layout)}", path);
        }
        return layout;
    }

    /// <summary>The corpus name to show: "ptb" for PTB files, else the directory's name.</summary>
    public string NameFor(string dir) => this == Ptb ? "ptb" : new DirectoryInfo(Path.GetFullPath(dir)).Name;

    static string DownloadHint(string dir, CorpusLayout? layout)
    {
        var name = Path.GetFileName(Path.TrimEndingDirectorySeparator(Path.GetFullPath(dir))).ToLowerInvariant();
        var corpus = layout == Ptb || name.Contains("ptb") || name.Contains("penn") ? "ptb"
            : name.Contains("103") ? "wikitext-103" : "wikitext-2";
        return $"Get it with: deq data download --corpus {corpus} --dir {dir}";
    }
}
