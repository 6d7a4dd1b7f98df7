using System.Text;

namespace Deq.Experiments;

/// <summary>
/// The paper-figures folder: where notebooks write tables and charts, one subfolder per scale
/// (paper-figures/small/..., paper-figures/large/...), so that a default-scale run never overwrites
/// committed large-scale results; the index at the top lists every scale's outputs.
/// </summary>
public static class PaperFigures
{
    /// <summary>Environment variable the runner sets to the folder's absolute path.</summary>
    public const string Variable = "DEQ_FIGURES_DIR";

    /// <summary>The folder: <see cref="Variable"/>, else ../paper-figures from the current directory (a notebook's folder).</summary>
    public static string Directory =>
        Environment.GetEnvironmentVariable(Variable) is { Length: > 0 } d ? d : Path.GetFullPath(Path.Combine("..", "paper-figures"));

    /// <summary>The subfolder name of a scale: "smoke", "small", "large", "paper".</summary>
    public static string ScaleFolder(ExperimentScale scale) => scale.ToString().ToLowerInvariant();

    /// <summary>The folder a scale's outputs go to under <paramref name="root"/> (default: <see cref="Directory"/>).</summary>
    public static string DirectoryFor(ExperimentScale scale, string? root = null) => Path.Combine(root ?? Directory, ScaleFolder(scale));

    /// <summary>A path in the folder of the scale in DEQ_SCALE (<see cref="ExperimentScales.FromEnvironment"/>), creating the folder.</summary>
    public static string PathOf(string fileName) => PathOf(fileName, ExperimentScales.FromEnvironment());

    /// <summary>A path in the folder of <paramref name="scale"/>, creating the folder.</summary>
    public static string PathOf(string fileName, ExperimentScale scale)
    {
        var dir = DirectoryFor(scale);
        System.IO.Directory.CreateDirectory(dir);
        return Path.Combine(dir, fileName);
    }

    /// <summary>Writes <paramref name="report"/> as &lt;name&gt;.json in its scale's folder; returns the path.</summary>
    public static string WriteReport(ExperimentReport report)
    {
        var path = PathOf(report.Name + ".json", ExperimentScales.Parse(report.Scale));
        report.Write(path);
        return path;
    }

    static readonly (string File, string What)[] Known =
    [
        ("table1-copy-memory.md", "Table 1: copy memory, final test loss"),
        ("table1-copy-memory.json", "Table 1: rows and verdicts (JSON)"),
        ("table1-copy-memory.html", "Table 1: test loss during training, with the paper's final losses (interactive)"),
        ("table2-ptb.md", "Table 2: Penn Treebank, test perplexity and training memory"),
        ("table2-ptb.json", "Table 2: rows and verdicts (JSON)"),
        ("table3-wikitext.md", "Table 3: WikiText-103 (WikiText-2 where WT103 is absent)"),
        ("table3-wikitext.json", "Table 3: rows and verdicts (JSON)"),
        ("table4-runtime.md", "Table 4: runtime ratios, DEQ over the unrolled baseline"),
        ("table4-runtime.json", "Table 4: rows and verdicts (JSON)"),
        ("table4-runtime.html", "Table 4: the paper's ratios beside ours (interactive)"),
        ("figure2-convergence.md", "Figure 2: the verdict and the deciding figures"),
        ("figure2-convergence.json", "Figure 2: points and verdict (JSON)"),
        ("figure2-convergence.html", "Figure 2, right: residual against f evaluations, Broyden against plain iteration (interactive)"),
        ("figure2-convergence.png", "Figure 2 (image)"),
        ("figure2-steps.html", "Figure 2, left: forward and backward solver steps over training (interactive)"),
        ("figure2-steps.png", "Figure 2, left (image)"),
        ("figure3-tolerance.md", "Figure 3: the points, as a table, and the verdict"),
        ("figure3-tolerance.json", "Figure 3: points and verdict (JSON)"),
        ("figure3-tolerance.html", "Figure 3, left: validation perplexity against the forward tolerance (interactive)"),
        ("figure3-tolerance.png", "Figure 3 (image)"),
        ("figure3-iterations.html", "Figure 3, right: validation perplexity against the iteration limit (interactive)"),
        ("figure3-iterations.png", "Figure 3, right (image)"),
        ("memory-vs-depth.html", "Training memory against depth: DEQ against the unrolled stack (interactive)"),
        ("memory-vs-depth.png", "Memory against depth (image)"),
        ("benchmarks.json", "Benchmarks: memory and speed, written by `deq bench`"),
    ];

    /// <summary>
    /// Writes README.md in <paramref name="directory"/>: per scale folder (large first: the committed results), the known
    /// outputs that exist, their verdict lines and wall time from the JSON reports; then what sits at the top level
    /// (outputs written before the folders were split by scale, `deq bench`) and the executed notebooks.
    /// </summary>
    public static void WriteIndex(string directory)
    {
        var md = new StringBuilder();
        md.AppendLine("# paper-figures").AppendLine();
        md.AppendLine("What the notebooks in `Deq.Notebooks` produce: the paper's numbers beside ours, one folder per scale");
        md.AppendLine("(`reproduce --scale NAME` writes NAME/ only). Every table ends with the scale, device, wall time and commit of our run,");
        md.AppendLine("then one verdict line per paper claim it tests. Regenerate with the README's main-job command.").AppendLine();
        foreach (var scale in new[] { ExperimentScale.Large, ExperimentScale.Paper, ExperimentScale.Small, ExperimentScale.Smoke })
        {
            var dir = DirectoryFor(scale, directory);
            if (!System.IO.Directory.Exists(dir)) continue;
            md.AppendLine($"## Scale `{ScaleFolder(scale)}`").AppendLine();
            md.AppendLine("| file | what | wall time | commit |").AppendLine("|---|---|---|---|");
            var verdicts = new List<string>();
            foreach (var (file, what) in Known.Where(k => File.Exists(Path.Combine(dir, k.File))))
            {
                string wall = "", commit = "";
                if (file.EndsWith(".json", StringComparison.Ordinal) && file != "benchmarks.json" && TryRead(Path.Combine(dir, file)) is { } r)
                {
                    (wall, commit) = ($"{r.WallSeconds / 60:F1} min", $"`{r.Commit}`");
                    verdicts.AddRange(r.Verdicts.Select(v => $"{Path.GetFileNameWithoutExtension(file)}: {v.Line}"));
                }
                md.AppendLine($"| [{ScaleFolder(scale)}/{file}]({ScaleFolder(scale)}/{file}) | {what} | {wall} | {commit} |");
            }
            AppendNotebooks(md, Path.Combine(dir, "notebooks"), $"{ScaleFolder(scale)}/notebooks");
            md.AppendLine();
            if (verdicts.Count > 0)
            {
                md.AppendLine("Verdicts:").AppendLine();
                foreach (var v in verdicts) md.AppendLine($"- {v}");
                md.AppendLine();
            }
        }
        var top = Known.Where(k => File.Exists(Path.Combine(directory, k.File))).ToList();
        var topNotebooks = Path.Combine(directory, "notebooks");
        if (top.Count > 0 || System.IO.Directory.Exists(topNotebooks))
        {
            md.AppendLine("## Top level (benchmarks; outputs of runs before the split by scale)").AppendLine();
            md.AppendLine("| file | what | wall time | commit |").AppendLine("|---|---|---|---|");
            foreach (var (file, what) in top) md.AppendLine($"| [{file}]({file}) | {what} | | |");
            AppendNotebooks(md, topNotebooks, "notebooks");
        }
        AtomicFile.WriteAllText(Path.Combine(directory, "README.md"), md.ToString());
    }

    static void AppendNotebooks(StringBuilder md, string folder, string link)
    {
        if (!System.IO.Directory.Exists(folder)) return;
        foreach (var nb in System.IO.Directory.GetFiles(folder, "*.ipynb").Order(StringComparer.Ordinal))
            md.AppendLine($"| [{link}/{Path.GetFileName(nb)}]({link}/{Path.GetFileName(nb)}) | executed notebook, with outputs | | |");
    }

    static ExperimentReport? TryRead(string path)
    {
        try { return ExperimentReport.FromJson(File.ReadAllText(path)); }
        catch (Exception e) when (e is System.Text.Json.JsonException or IOException or InvalidOperationException or NotSupportedException) { return null; }
    }
}
