namespace Deq.Charts;

/// <summary>
/// A rendered chart. Displayed in a notebook (<c>display chart</c>, or as a cell's value) it is one output
/// with text/html (interactive; plotly.js carried by the session's first chart), image/png where a PNG
/// was rendered, and text/plain: each client shows the richest type it can (Jupyter, VS Code, GitHub, a
/// terminal). Formatting is by the .NET Interactive convention (an attribute named
/// TypeFormatterSourceAttribute), so this library needs no reference to the kernel's assemblies.
/// </summary>
/// <param name="Title">The chart's title.</param>
/// <param name="InlineHtml">The HTML fragment for inline display.</param>
/// <param name="HtmlPath">The standalone HTML page written, if any.</param>
/// <param name="PngPath">The PNG file written, if any.</param>
/// <param name="Png">The PNG bytes, when Chromium rendered one.</param>
/// <param name="PngSkipped">Why no PNG was rendered, when it was skipped.</param>
[TypeFormatterSource(typeof(ChartFormatters), PreferredMimeTypes = ["text/html", "text/plain"])]
public record ChartResult(string Title, string InlineHtml, string? HtmlPath, string? PngPath, byte[]? Png, string? PngSkipped)
{
    /// <inheritdoc />
    public sealed override string ToString() =>
        $"chart '{Title}': html={HtmlPath ?? "(inline only)"} png={PngPath ?? (Png is null ? "(none" + (PngSkipped is null ? "" : ": " + PngSkipped) + ")" : "(inline only)")}";
}

/// <summary>A chart with its PNG: displays as text/html, image/png and text/plain.</summary>
[TypeFormatterSource(typeof(ChartFormatters), PreferredMimeTypes = ["text/html", "image/png", "text/plain"])]
sealed record ChartWithImage(string Title, string InlineHtml, string? HtmlPath, string? PngPath, byte[] Image)
    : ChartResult(Title, InlineHtml, HtmlPath, PngPath, Image, null);

/// <summary>Matched by name by .NET Interactive's formatter (no reference to it needed).</summary>
[AttributeUsage(AttributeTargets.Class, Inherited = false)]
sealed class TypeFormatterSourceAttribute(Type formatterSourceType) : Attribute
{
    public Type FormatterSourceType { get; } = formatterSourceType;
    public string[]? PreferredMimeTypes { get; set; }
}

/// <summary>The convention's formatter source: CreateTypeFormatters() yields objects with MimeType and Format.</summary>
sealed class ChartFormatters
{
    public IEnumerable<object> CreateTypeFormatters() =>
        [new ChartFormatter("text/html"), new ChartFormatter("image/png"), new ChartFormatter("text/plain")];
}

sealed class ChartFormatter(string mimeType)
{
    public string MimeType { get; } = mimeType;
    public Type Type => typeof(ChartResult);

    /// <summary>image/png is written as base64, as Jupyter's notebook format stores it.</summary>
    public bool Format(object instance, TextWriter writer)
    {
        if (instance is not ChartResult chart) return false;
        switch (MimeType)
        {
            case "text/html": writer.Write(chart.InlineHtml); return true;
            case "image/png" when chart.Png is { } png: writer.Write(Convert.ToBase64String(png)); return true;
            case "text/plain": writer.Write(chart.ToString()); return true;
            default: return false;
        }
    }
}
