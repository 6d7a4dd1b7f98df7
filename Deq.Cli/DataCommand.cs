using System.Diagnostics;
using Deq.Data;

namespace Deq.Cli;

/// <summary>`deq data download|info`: fetch a corpus, or read one and report its sizes.</summary>
internal static class DataCommand
{
    public static int Run(string[] args)
    {
        switch (args.FirstOrDefault())
        {
            case "download":
            {
                var o = CliArgs.Parse(args[1..], new() { ["corpus"] = "", ["dir"] = "", ["archive"] = "" });
                var corpus = Required(o, "corpus");
                var dir = Required(o, "dir");
                var source = CorpusDownload.Source(corpus);
                var files = o.Text("archive") is { Length: > 0 } archive
                    ? CorpusDownload.Extract(archive, dir, source.Layout)
                    : CorpusDownload.DownloadAsync(corpus, dir).GetAwaiter().GetResult();
                foreach (var f in files) Console.WriteLine($"{f}  {new FileInfo(f).Length:N0} bytes");
                return 0;
            }
            case "info":
            {
                var o = CliArgs.Parse(args[1..], new() { ["dir"] = "", ["unknown-words"] = "error" });
                var unknown = o.Choice("unknown-words", "error", "map") == "map" ? UnknownWords.MapToUnk : UnknownWords.Error;
                var clock = Stopwatch.StartNew();
                using var c = Corpus.Load(Required(o, "dir"), new CorpusOptions(unknown));
                Console.WriteLine($"{c.Name}: vocabulary {c.Vocabulary.Count:N0}; tokens train {c.Train.shape[0]:N0}, valid {c.Valid.shape[0]:N0}, test {c.Test.shape[0]:N0}; read in {clock.Elapsed.TotalSeconds:F2} s");
                return 0;
            }
            default:
                throw new ArgumentException("deq data needs a subcommand: download --corpus ptb|wikitext-2|wikitext-103 --dir DIR [--archive FILE], or info --dir DIR (deq data --help)");
        }
    }

    static string Required(CliArgs o, string name) =>
        o.Text(name) is { Length: > 0 } v ? v : throw new ArgumentException($"--{name} is required");
}
