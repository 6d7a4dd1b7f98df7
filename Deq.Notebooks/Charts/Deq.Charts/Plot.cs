using System.Reflection;
using System.Runtime.Loader;
using System.Text.Json;

namespace Deq.Charts;

/// <summary>One trace. Mode: "lines", "markers", "lines+markers" (or "bar", from <see cref="Plot.StackedBars"/>). X may be empty (0..n-1).</summary>
public sealed record Series(string Name, double[] X, double[] Y, string Mode = "lines");

/// <summary>When charts render PNGs (headless Chromium). Environment: DEQ_PNG=auto|require|off.</summary>
public enum PngPolicy
{
    /// <summary>A PNG where Chromium is found; otherwise skipped with one line, the HTML still written.</summary>
    Auto,
    /// <summary>A PNG or an error: a missing or failing Chromium throws.</summary>
    Require,
    /// <summary>No PNGs.</summary>
    Off,
}

/// <summary>Which inline chart outputs carry plotly.js. Environment: DEQ_PLOTLYJS=once|every.</summary>
public enum PlotlyJsEmbedding
{
    /// <summary>The first chart of the session (one kernel, one notebook) carries it; later ones use it.</summary>
    OncePerSession,
    /// <summary>Every chart carries it (about 3.5 MB each): each output stands alone.</summary>
    EveryChart,
}

/// <summary>Charts with BCL-only types. The Plotly.NET backend runs in an isolated AssemblyLoadContext.</summary>
public static class Plot
{
    static readonly object Gate = new();
    static Func<string, string>? _render;
    static bool _plotlyJsSent;
    static readonly HashSet<string> Reported = [];

    /// <summary>Folder holding Deq.Charts.Plotly.dll and its dependencies (default: ./plotly next to this dll;
    /// override with env DEQ_CHARTS_BACKEND).</summary>
    public static string BackendDir =>
        Environment.GetEnvironmentVariable("DEQ_CHARTS_BACKEND") is { Length: > 0 } d ? d
        : Path.Combine(Path.GetDirectoryName(typeof(Plot).Assembly.Location)!, "plotly");

    static PngPolicy? _png = ParsePolicy(Environment.GetEnvironmentVariable("DEQ_PNG"));

    /// <summary>PNG policy; starts from DEQ_PNG (default <see cref="PngPolicy.Auto"/>).</summary>
    public static PngPolicy Png
    {
        get => _png ?? throw new ArgumentException($"DEQ_PNG='{Environment.GetEnvironmentVariable("DEQ_PNG")}': expected auto, require or off");
        set => _png = value;
    }

    /// <summary>Which charts carry plotly.js; starts from DEQ_PLOTLYJS (default once per session).</summary>
    public static PlotlyJsEmbedding PlotlyJs { get; set; } =
        Environment.GetEnvironmentVariable("DEQ_PLOTLYJS") is "every" ? PlotlyJsEmbedding.EveryChart : PlotlyJsEmbedding.OncePerSession;

    /// <summary>The Chromium (or Chrome) binary for PNGs: DEQ_CHROMIUM, else chromium, chromium-browser,
    /// google-chrome on PATH; null when none is found.</summary>
    public static string? Chromium { get; set; } = FindChromium();

    /// <summary>Raw entry: JSON spec in, JSON result out (see Deq.Charts.Plotly.Renderer).</summary>
    public static string Render(string specJson)
    {
        lock (Gate)
        {
            if (_render is null)
            {
                var main = Path.Combine(BackendDir, "Deq.Charts.Plotly.dll");
                if (!File.Exists(main))
                    throw new FileNotFoundException($"Deq.Charts: no chart backend at {main} (build Deq.Cli, or set DEQ_CHARTS_BACKEND)", main);
                var alc = new BackendContext(main);
                var asm = alc.LoadFromAssemblyPath(main);
                var m = asm.GetType("Deq.Charts.Plotly.Renderer", throwOnError: true)!
                           .GetMethod("Render", BindingFlags.Public | BindingFlags.Static)!;
                _render = m.CreateDelegate<Func<string, string>>();
            }
            return _render(specJson);
        }
    }

    /// <summary>
    /// A line chart of <paramref name="series"/>, for inline display (<c>display chart</c>: interactive
    /// HTML that carries plotly.js, plus an image/png output where Chromium is found). Writes a standalone
    /// HTML page (plotly.js embedded, works offline) to <paramref name="htmlPath"/> and the PNG to
    /// <paramref name="pngPath"/> when given. Without Chromium the PNG is skipped with one line (see <see cref="Png"/>).
    /// </summary>
    public static ChartResult Lines(string title, Series[] series, string xTitle = "", string yTitle = "",
        bool logX = false, bool logY = false, string? htmlPath = null, string? pngPath = null,
        int width = 800, int height = 500)
        => Draw(title, series, null, xTitle, yTitle, logX, logY, htmlPath, pngPath, width, height);

    /// <summary>
    /// A stacked bar chart: one bar per category; each of <paramref name="segments"/> (a name and one value per
    /// category) stacks on the ones before it. Display and files as in <see cref="Lines"/>.
    /// </summary>
    public static ChartResult StackedBars(string title, string[] categories, (string Name, double[] Values)[] segments,
        string yTitle = "", string? htmlPath = null, string? pngPath = null, int width = 800, int height = 500)
    {
        foreach (var (name, values) in segments)
            if (values.Length != categories.Length)
                throw new ArgumentException($"Deq.Charts: segment '{name}' has {values.Length} values for {categories.Length} categories");
        var series = segments.Select(s => new Series(s.Name, [], s.Values, "bar")).ToArray();
        return Draw(title, series, categories, "", yTitle, false, false, htmlPath, pngPath, width, height);
    }

    // Lines and bars (categories: bar labels, or null for lines).
    static ChartResult Draw(string title, Series[] series, string[]? categories, string xTitle, string yTitle,
        bool logX, bool logY, string? htmlPath, string? pngPath, int width, int height)
    {
        foreach (var s in series)
            if (s.X.Length != 0 && s.X.Length != s.Y.Length)
                throw new ArgumentException($"Deq.Charts: series '{s.Name}' has {s.X.Length} x values but {s.Y.Length} y values");
        lock (Gate)
        {
            var policy = Png;
            var chromium = policy == PngPolicy.Off ? null : Chromium;
            if (chromium is null && policy == PngPolicy.Require)
                throw new InvalidOperationException($"Deq.Charts: DEQ_PNG=require, but {NoChromium()}");
            bool embed = PlotlyJs == PlotlyJsEmbedding.EveryChart || !_plotlyJsSent;
            var spec = new Dictionary<string, object?>
            {
                ["title"] = title, ["xTitle"] = xTitle, ["yTitle"] = yTitle, ["logX"] = logX, ["logY"] = logY,
                ["width"] = width, ["height"] = height, ["embedPlotlyJs"] = embed, ["chromium"] = chromium,
                ["htmlPath"] = htmlPath is null ? null : Path.GetFullPath(htmlPath),
                ["pngPath"] = pngPath is null || chromium is null ? null : Path.GetFullPath(pngPath),
                ["series"] = series.Select(s => new { name = s.Name, x = Gaps(s.X), y = Gaps(s.Y), mode = s.Mode }).ToArray(),
                ["categories"] = categories,
            };
            using var result = JsonDocument.Parse(Render(JsonSerializer.Serialize(spec)));
            var root = result.RootElement;
            _plotlyJsSent |= embed;
            var png = root.GetProperty("png").GetString() is { } b64 ? Convert.FromBase64String(b64) : null;
            var skipped = root.GetProperty("pngError").GetString() ?? (chromium is null && policy == PngPolicy.Auto ? NoChromium() : null);
            if (skipped is not null && policy == PngPolicy.Require)
                throw new InvalidOperationException($"Deq.Charts: DEQ_PNG=require, but {skipped}");
            if (skipped is not null && Reported.Add(skipped))
                Console.WriteLine($"Deq.Charts: PNGs skipped, HTML still written: {skipped}. DEQ_PNG=require makes this an error.");
            var html = root.GetProperty("html").GetString()!;
            var htmlFile = (string?)spec["htmlPath"];
            var pngFile = png is null ? null : (string?)spec["pngPath"];
            // a PNG from an earlier run must not pass for this chart's
            if (png is null && pngPath is not null && File.Exists(pngPath)) File.Delete(pngPath);
            return png is null
                ? new ChartResult(title, html, htmlFile, null, null, skipped)
                : new ChartWithImage(title, html, htmlFile, pngFile, png);
        }
    }

    /// <summary>One series as a line chart; see <see cref="Lines"/>.</summary>
    public static ChartResult Line(double[] x, double[] y, string title = "", string name = "",
        string xTitle = "", string yTitle = "", bool logY = false, string? htmlPath = null,
        string? pngPath = null, int width = 800, int height = 500)
        => Lines(title, [new Series(name, x, y)], xTitle, yTitle, false, logY, htmlPath, pngPath, width, height);

    /// <summary>NaN and infinities (a failed run's point) travel as JSON null and draw as gaps.</summary>
    static double?[] Gaps(double[] values) => values.Select(v => double.IsFinite(v) ? v : (double?)null).ToArray();

    /// <summary>Forget that this session's notebook already has plotly.js (the next chart carries it again).</summary>
    internal static void ResetSession()
    {
        lock (Gate) _plotlyJsSent = false;
    }

    static PngPolicy? ParsePolicy(string? value) => value?.Trim().ToLowerInvariant() switch
    {
        null or "" or "auto" => PngPolicy.Auto,
        "require" => PngPolicy.Require,
        "off" => PngPolicy.Off,
        _ => null,
    };

    static string NoChromium() =>
        Environment.GetEnvironmentVariable("DEQ_CHROMIUM") is { Length: > 0 } exe && exe != Chromium
            ? $"DEQ_CHROMIUM={exe} is not a file"
            : "no Chromium found on PATH (install Debian's chromium package or set DEQ_CHROMIUM)";

    static string? FindChromium()
    {
        if (Environment.GetEnvironmentVariable("DEQ_CHROMIUM") is { Length: > 0 } exe)
            return File.Exists(exe) ? exe : null;
        var path = (Environment.GetEnvironmentVariable("PATH") ?? "").Split(Path.PathSeparator, StringSplitOptions.RemoveEmptyEntries);
        return (from name in new[] { "chromium", "chromium-browser", "google-chrome", "google-chrome-stable" }
                from dir in path
                let candidate = Path.Combine(dir, name)
                where File.Exists(candidate)
                select candidate).FirstOrDefault();
    }

    sealed class BackendContext(string mainPath) : AssemblyLoadContext("Deq.Charts.Plotly")
    {
        readonly AssemblyDependencyResolver _resolver = new(mainPath);
        readonly string _dir = Path.GetDirectoryName(mainPath)!;

        protected override Assembly? Load(AssemblyName name)
        {
            // everything the backend ships (FSharp.Core 10.1, Plotly.NET, ...) is loaded here, isolated;
            // framework assemblies (System.*) fall through (null) to the shared default context.
            var path = _resolver.ResolveAssemblyToPath(name);
            if (path is null)
            {
                var local = Path.Combine(_dir, name.Name + ".dll");
                if (File.Exists(local)) path = local;
            }
            return path is null ? null : LoadFromAssemblyPath(path);
        }

        protected override IntPtr LoadUnmanagedDll(string name)
        {
            var path = _resolver.ResolveUnmanagedDllToPath(name);
            return path is null ? IntPtr.Zero : LoadUnmanagedDllFromPath(path);
        }
    }
}
