using System.Diagnostics;
using System.Text;
using System.Text.Json;
using System.Text.RegularExpressions;
using Deq.Experiments;

namespace Deq.Cli;

/// <summary>
/// `deq reproduce`: runs the repository's notebooks (Deq.Notebooks/NN-name.ipynb) headless with the pinned dotnet-repl,
/// echoing experiment progress while each runs, and keeps the executed notebooks in paper-figures.
/// </summary>
internal static partial class Reproduce
{
    public static int Run(string[] args)
    {
        bool list = args.Contains("--list");
        var opts = CliArgs.Parse(args.Where(a => a != "--list").ToArray(), new() { ["scale"] = "small", ["only"] = "", ["root"] = "", ["figures"] = "" });
        var scale = ExperimentScales.Parse(opts.Text("scale"));
        var root = opts.Text("root") is { Length: > 0 } r ? Path.GetFullPath(r) : FindRepositoryRoot();
        var notebookDir = Path.Combine(root, "Deq.Notebooks");
        var figures = opts.Text("figures") is { Length: > 0 } f ? Path.GetFullPath(f) : Path.Combine(root, "paper-figures");
        // Executed notebooks go with their scale's outputs, so a small run never replaces a large one's.
        var executed = Path.Combine(PaperFigures.DirectoryFor(scale, figures), "notebooks");

        var only = opts.Text("only").Split(',', StringSplitOptions.RemoveEmptyEntries);
        var notebooks = RepositoryNotebooks(notebookDir)
            .Where(nb => only.Length == 0 || only.Any(o => Path.GetFileName(nb).Contains(o, StringComparison.OrdinalIgnoreCase)))
            .ToArray();
        if (notebooks.Length == 0)
            throw new ArgumentException($"no notebook in {notebookDir} matches --only '{opts.Text("only")}'");
        if (list)
        {
            foreach (var nb in notebooks) Console.WriteLine(Path.GetFileName(nb));
            return 0;
        }
        Directory.CreateDirectory(executed);

        Console.WriteLine($"deq reproduce: {notebooks.Length} notebook(s) at scale '{scale.ToString().ToLowerInvariant()}', writing {figures}");
        if (Exec(root, "dotnet", ["tool", "restore"], quiet: true) != 0)
            throw new InvalidOperationException("`dotnet tool restore` failed; the notebooks need the pinned dotnet-repl (.config/dotnet-tools.json).");

        var failed = new List<string>();
        var clock = Stopwatch.StartNew();
        for (int i = 0; i < notebooks.Length; i++)
        {
            var nb = notebooks[i];
            var name = Path.GetFileName(nb);
            var output = Path.Combine(executed, name);
            Console.WriteLine($"[{i + 1}/{notebooks.Length}] {name} ...");
            var started = clock.Elapsed;
            var code = RunNotebook(notebookDir, nb, output, scale, figures);
            var errors = CellErrors(output);
            foreach (var e in errors) Console.WriteLine($"    cell error: {e}");
            var verdict = code == 0 && errors.Count == 0 ? "ok" : $"FAILED (exit {code})";
            Console.WriteLine($"[{i + 1}/{notebooks.Length}] {name}: {verdict} in {(clock.Elapsed - started).TotalSeconds:F0} s");
            if (verdict != "ok") failed.Add(name);
        }
        PaperFigures.WriteIndex(figures);
        Console.WriteLine(failed.Count == 0
            ? $"deq reproduce: all {notebooks.Length} notebook(s) ran in {clock.Elapsed.TotalMinutes:F1} min; see {Path.Combine(figures, "README.md")}"
            : $"deq reproduce: {failed.Count} notebook(s) failed: {string.Join(", ", failed)}");
        return failed.Count == 0 ? 0 : 1;
    }

    /// <summary>The repository's notebooks: NN-name.ipynb, in order. Copies such as a stray
    /// NN-name.nbconvert.ipynb (what `jupyter nbconvert --execute` writes beside its input) do not match.</summary>
    internal static string[] RepositoryNotebooks(string notebookDir) =>
        Directory.GetFiles(notebookDir, "*.ipynb")
            .Where(nb => NotebookName().IsMatch(Path.GetFileName(nb)))
            .Order(StringComparer.Ordinal)
            .ToArray();

    [GeneratedRegex(@"^[0-9]{2}-[a-z0-9]+(-[a-z0-9]+)*\.ipynb$")]
    private static partial Regex NotebookName();

    static int RunNotebook(string notebookDir, string notebook, string output, ExperimentScale scale, string figures)
    {
        var progress = Path.Combine(Path.GetTempPath(), $"deq-progress-{Guid.NewGuid():N}.log");
        File.WriteAllText(progress, "");
        var env = new Dictionary<string, string>
        {
            [ExperimentScales.Variable] = scale.ToString().ToLowerInvariant(),
            [PaperFigures.Variable] = figures,
            [Progress.FileVariable] = progress,
        };
        try
        {
            // dotnet-repl resolves relative #r paths against its working directory, so it runs
            // from the notebook folder, as VS Code's kernel does.
            using var tail = new ProgressTail(progress);
            return Exec(notebookDir, "dotnet",
                ["tool", "run", "dotnet-repl", "--", "--run", notebook, "--exit-after-run", "--output-path", output], env: env);
        }
        finally
        {
            File.Delete(progress);
        }
    }

    /// <summary>The error outputs of the executed notebook, one line each.</summary>
    static List<string> CellErrors(string executed)
    {
        var errors = new List<string>();
        if (!File.Exists(executed)) return ["no executed notebook was written"];
        using var doc = JsonDocument.Parse(File.ReadAllText(executed));
        int index = 0;
        foreach (var cell in doc.RootElement.GetProperty("cells").EnumerateArray())
        {
            index++;
            if (!cell.TryGetProperty("outputs", out var outputs)) continue;
            foreach (var o in outputs.EnumerateArray())
                if (o.TryGetProperty("output_type", out var t) && t.GetString() == "error")
                    errors.Add($"cell {index}: {o.GetProperty("ename").GetString()}: {o.GetProperty("evalue").GetString()}");
        }
        return errors;
    }

    static int Exec(string cwd, string file, string[] args, Dictionary<string, string>? env = null, bool quiet = false)
    {
        var psi = new ProcessStartInfo(file) { WorkingDirectory = cwd, UseShellExecute = false, RedirectStandardInput = true };
        foreach (var a in args) psi.ArgumentList.Add(a);
        foreach (var (k, v) in env ?? []) psi.Environment[k] = v;
        if (quiet) (psi.RedirectStandardOutput, psi.RedirectStandardError) = (true, true);
        using var p = Process.Start(psi) ?? throw new InvalidOperationException($"could not start {file}");
        p.StandardInput.Close();
        var output = quiet ? p.StandardOutput.ReadToEndAsync() : null;
        var error = quiet ? p.StandardError.ReadToEndAsync() : null;
        p.WaitForExit();
        if (quiet && p.ExitCode != 0) Console.Error.WriteLine(output!.Result + error!.Result);
        return p.ExitCode;
    }

    internal static string FindRepositoryRoot() =>
        CorpusLocator.RepositoryRoot()
        ?? throw new InvalidOperationException("run `deq reproduce` inside the Deq repository (no Deq.sln above the current directory), or pass --root DIR");

    /// <summary>Echoes lines appended to the progress file while a notebook runs.</summary>
    sealed class ProgressTail : IDisposable
    {
        readonly string _path;
        readonly Timer _timer;
        long _offset;

        public ProgressTail(string path)
        {
            _path = path;
            _timer = new Timer(_ => Poll(), null, 1000, 1000);
        }

        void Poll()
        {
            lock (this)
            {
                using var stream = new FileStream(_path, FileMode.Open, FileAccess.Read, FileShare.ReadWrite);
                if (stream.Length <= _offset) return;
                stream.Seek(_offset, SeekOrigin.Begin);
                using var reader = new StreamReader(stream, Encoding.UTF8);
                var text = reader.ReadToEnd();
                var complete = text.LastIndexOf('\n') + 1;
                foreach (var line in text[..complete].Split('\n', StringSplitOptions.RemoveEmptyEntries))
                    Console.WriteLine($"    {line}");
                _offset += Encoding.UTF8.GetByteCount(text[..complete]);
            }
        }

        public void Dispose()
        {
            _timer.Dispose();
            Poll();
        }
    }
}
