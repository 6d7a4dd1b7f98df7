using System.Reflection;
using System.Runtime.Loader;
using System.Text.Json;

namespace Deq.Charts;

/// <summary>One trace. Mode: "lines", "markers" or "lines+markers". X may be empty (0..n-1).</summary>
public sealed record Series(string Name, double[] X, double[] Y, string Mode = "lines");

/// <summary>Result of a render: HTML fragment to display inline, plus the files written.</summary>
public sealed record ChartResult(string InlineHtml, string? HtmlPath, string? PngPath)
{
    /// <inheritdoc />
    public override string ToString() => $"chart html={HtmlPath} png={PngPath}";
}

/// <summary>Charts with BCL-only types. The Plotly.NET backend runs in an isolated AssemblyLoadContext.</summary>
public static class Plot
{
    static readonly object Gate = new();
    static Func<string, string>? _render;

    /// <summary>Folder holding Deq.Charts.Plotly.dll and its dependencies (default: ./plotly next to this dll;
    /// override with env DEQ_CHARTS_BACKEND).</summary>
    public static string BackendDir =>
        Environment.GetEnvironmentVariable("DEQ_CHARTS_BACKEND") is { Length: > 0 } d ? d
        : Path.Combine(Path.GetDirectoryName(typeof(Plot).Assembly.Location)!, "plotly");

    /// <summary>Raw entry: JSON spec in, inline HTML out (see Deq.Charts.Plotly.Renderer).</summary>
    public static string Render(string specJson)
    {
        lock (Gate)
        {
            if (_render is null)
            {
                var main = Path.Combine(BackendDir, "Deq.Charts.Plotly.dll");
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
    /// A line chart of <paramref name="series"/>. Writes a standalone HTML page (plotly.js embedded,
    /// works offline) to <paramref name="htmlPath"/> and a PNG (headless Chromium) to
    /// <paramref name="pngPath"/> when given. <paramref name="view"/> picks the inline output:
    /// "require" (plotly.js from its CDN), "full" (embedded), "png" (an image; needs pngPath) or "none".
    /// </summary>
    public static ChartResult Lines(string title, Series[] series, string xTitle = "", string yTitle = "",
        bool logX = false, bool logY = false, string? htmlPath = null, string? pngPath = null,
        string view = "require", int width = 800, int height = 500)
    {
        var spec = new Dictionary<string, object?>
        {
            ["title"] = title, ["xTitle"] = xTitle, ["yTitle"] = yTitle, ["logX"] = logX, ["logY"] = logY,
            ["width"] = width, ["height"] = height, ["inline"] = view,
            ["htmlPath"] = htmlPath is null ? null : Path.GetFullPath(htmlPath),
            ["pngPath"] = pngPath is null ? null : Path.GetFullPath(pngPath),
            ["series"] = series.Select(s => new { name = s.Name, x = s.X, y = s.Y, mode = s.Mode }).ToArray(),
        };
        var html = Render(JsonSerializer.Serialize(spec));
        return new ChartResult(html, (string?)spec["htmlPath"], (string?)spec["pngPath"]);
    }

    /// <summary>
    /// A stacked bar chart: one bar per category, each of <paramref name="segments"/> (name and one value per category)
    /// stacked on the previous ones. Files and <paramref name="view"/> as in <see cref="Lines"/>.
    /// </summary>
    public static ChartResult StackedBars(string title, string[] categories, (string Name, double[] Values)[] segments, string yTitle = "",
        string? htmlPath = null, string? pngPath = null, string view = "require", int width = 800, int height = 500)
    {
        foreach (var (name, values) in segments)
            if (values.Length != categories.Length)
                throw new ArgumentException($"Plot.StackedBars: segment '{name}' has {values.Length} values for {categories.Length} categories.", nameof(segments));
        var spec = new Dictionary<string, object?>
        {
            ["title"] = title, ["yTitle"] = yTitle, ["stacked"] = true, ["categories"] = categories,
            ["width"] = width, ["height"] = height, ["inline"] = view,
            ["htmlPath"] = htmlPath is null ? null : Path.GetFullPath(htmlPath),
            ["pngPath"] = pngPath is null ? null : Path.GetFullPath(pngPath),
            ["series"] = segments.Select(s => new { name = s.Name, x = Array.Empty<double>(), y = s.Values, mode = "bar" }).ToArray(),
        };
        var html = Render(JsonSerializer.Serialize(spec));
        return new ChartResult(html, (string?)spec["htmlPath"], (string?)spec["pngPath"]);
    }

    /// <summary>One series as a line chart; see <see cref="Lines"/>.</summary>
    public static ChartResult Line(double[] x, double[] y, string title = "", string name = "",
        string xTitle = "", string yTitle = "", bool logY = false, string? htmlPath = null,
        string? pngPath = null, string view = "require", int width = 800, int height = 500)
        => Lines(title, [new Series(name, x, y)], xTitle, yTitle, false, logY, htmlPath, pngPath, view, width, height);

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
