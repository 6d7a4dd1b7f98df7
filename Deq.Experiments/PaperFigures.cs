using System.Text;

namespace Deq.Experiments;

/// <summary>The paper-figures folder: where notebooks write tables and charts, and its index.</summary>
public static class PaperFigures
{
    /// <summary>Environment variable the runner sets to the folder's absolute path.</summary>
    public const string Variable = "DEQ_FIGURES_DIR";

    /// <summary>The folder: <see cref="Variable"/>, else ../paper-figures from the current directory (a notebook's folder).</summary>
    public static string Directory =>
        Environment.GetEnvironmentVariable(Variable) is { Length: > 0 } d ? d : Path.GetFullPath(Path.Combine("..", "paper-figures"));

    /// <summary>A path inside the folder, creating the folder.</summary>
    public static string PathOf(string fileName)
    {
        System.IO.Directory.CreateDirectory(Directory);
        return Path.Combine(Directory, fileName);
    }

    static readonly (string File, string What)[] Known =
    [
        ("table1-copy-memory.md", "Table 1: copy memory (T = 400), final test loss"),
        ("table2-ptb.md", "Table 2: Penn Treebank, test perplexity and training memory"),
        ("table3-wikitext.md", "Table 3: WikiText-103 (WikiText-2 where WT103 is absent)"),
        ("table4-runtime.md", "Table 4: runtime ratios, DEQ over the unrolled baseline"),
        ("figure2-convergence.html", "Figure 2, right: residual against f evaluations, Broyden against plain iteration (interactive)"),
        ("figure2-convergence.png", "Figure 2 (image)"),
        ("figure2-steps.html", "Figure 2, left: forward and backward solver steps over training (interactive)"),
        ("figure2-steps.png", "Figure 2, left (image)"),
        ("figure3-tolerance.html", "Figure 3, left: validation perplexity against the forward tolerance (interactive)"),
        ("figure3-tolerance.png", "Figure 3 (image)"),
        ("figure3-tolerance.md", "Figure 3: the points, as a table"),
        ("figure3-iterations.html", "Figure 3, right: validation perplexity against the iteration limit (interactive)"),
        ("figure3-iterations.png", "Figure 3, right (image)"),
        ("memory-vs-depth.html", "Training memory against depth: DEQ against the unrolled stack (interactive)"),
        ("memory-vs-depth.png", "Memory against depth (image)"),
        ("benchmarks.json", "Benchmarks: memory and speed, written by `deq bench`"),
    ];

    /// <summary>Writes README.md listing the known outputs that exist and the executed notebooks.</summary>
    public static void WriteIndex(string directory)
    {
        var md = new StringBuilder();
        md.AppendLine("# paper-figures").AppendLine();
        md.AppendLine("What the notebooks in `Deq.Notebooks` produce: the paper's numbers beside ours. Every table ends with");
        md.AppendLine("the scale, device, wall time and commit of our run. Regenerate with the README's main-job command.").AppendLine();
        md.AppendLine("| file | what |").AppendLine("|---|---|");
        foreach (var (file, what) in Known.Where(k => File.Exists(Path.Combine(directory, k.File))))
            md.AppendLine($"| [{file}]({file}) | {what} |");
        var notebooks = Path.Combine(directory, "notebooks");
        if (System.IO.Directory.Exists(notebooks))
            foreach (var nb in System.IO.Directory.GetFiles(notebooks, "*.ipynb").Order(StringComparer.Ordinal))
                md.AppendLine($"| [notebooks/{Path.GetFileName(nb)}](notebooks/{Path.GetFileName(nb)}) | executed notebook, with outputs |");
        AtomicFile.WriteAllText(Path.Combine(directory, "README.md"), md.ToString());
    }
}
