namespace Deq.Charts.Plotly

open System
open System.IO
open System.Text.Json
open Plotly.NET
open Plotly.NET.LayoutObjects
open Plotly.NET.ImageExport

/// Entry point called (by reflection, across an AssemblyLoadContext boundary) with BCL types only.
/// spec JSON: { title, xTitle, yTitle, logX, logY, width, height,
///              series:[{name, x:[..], y:[..], mode:"lines"|"markers"|"lines+markers"|"bar"}],
///              categories:[..] (bars: a label per y value; bars stack),
///              htmlPath, pngPath, chromium (null: no PNG), embedPlotlyJs }
/// result JSON: { html (inline fragment), png (base64 or null), pngError (one line or null) }
type Renderer private () =
    static let str (e: JsonElement) (name: string) (dflt: string) =
        match e.TryGetProperty name with
        | true, v when v.ValueKind = JsonValueKind.String -> v.GetString()
        | _ -> dflt
    static let num (e: JsonElement) (name: string) (dflt: int) =
        match e.TryGetProperty name with
        | true, v when v.ValueKind = JsonValueKind.Number -> v.GetInt32()
        | _ -> dflt
    static let flag (e: JsonElement) (name: string) =
        match e.TryGetProperty name with
        | true, v when v.ValueKind = JsonValueKind.True -> true
        | _ -> false
    static let doubles (e: JsonElement) (name: string) =
        match e.TryGetProperty name with
        | true, v when v.ValueKind = JsonValueKind.Array ->
            [| for x in v.EnumerateArray() ->
                 if x.ValueKind = JsonValueKind.Number then x.GetDouble() else nan |]
        | _ -> [||]

    /// plotly.js as Plotly.NET ships it (an embedded resource), so charts need no network.
    static let plotlyJs =
        lazy
            let asm = typeof<GenericChart>.Assembly
            let name = $"Plotly.NET.plotly-{Globals.PLOTLYJS_VERSION}.min.js"
            use stream = asm.GetManifestResourceStream name
            if isNull stream then failwith $"Plotly.NET carries no resource {name}"
            use reader = new StreamReader(stream)
            reader.ReadToEnd()

    /// An axis whose labels read as numbers: exponents as powers (not "100μ"), and on a log axis
    /// spanning two decades or less every tick labelled in full (not "1000", then "2".."9").
    static let axis (title: string) (log: bool) (values: float[]) =
        let positive = values |> Array.filter (fun v -> v > 0.0 && Double.IsFinite v)
        let narrowLog = log && positive.Length > 0 && Array.max positive / Array.min positive <= 100.0
        let kind = if log then StyleParam.AxisType.Log else StyleParam.AxisType.Linear
        if narrowLog then
            LinearAxis.init (Title = Title.init (Text = title), AxisType = kind, TickFormat = "~g")
        else
            LinearAxis.init (Title = Title.init (Text = title), AxisType = kind, ExponentFormat = StyleParam.ExponentFormat.Power)

    /// The inline fragment: a div (holding the static image, if any, until plotly.js draws), plotly.js
    /// when asked, and a script that draws once plotly.js is there. plotly.js runs with define/module/
    /// exports shadowed, so it sets window.Plotly even where require.js is loaded (Jupyter).
    static let inlineHtml (figureJson: string) (embed: bool) (pngBase64: string) (width: int) (height: int) =
        let id = "deq-chart-" + Guid.NewGuid().ToString "N"
        let fallback =
            match pngBase64 with
            | null -> ""
            | b64 -> $"<img src=\"data:image/png;base64,{b64}\" width=\"{width}\" alt=\"chart (static image)\"/>"
        let library =
            if embed then
                "<script type=\"text/javascript\">/* plotly.js " + Globals.PLOTLYJS_VERSION + ", embedded by Deq.Charts */\n"
                + "if (typeof window.Plotly === 'undefined') { (function (define, module, exports) {\n"
                + plotlyJs.Value + "\n}).call(window); }\n</script>\n"
            else ""
        $"<div class=\"deq-chart\" id=\"{id}\" style=\"width:{width}px;max-width:100%%;height:{height}px\">{fallback}</div>\n"
        + library
        + "<script type=\"text/javascript\">\n(function () {\n"
        + $"  var figure = {figureJson};\n"
        + "  var config = {\"responsive\": true, \"displaylogo\": false};\n"
        + "  var attempts = 0;\n"
        + "  function draw() {\n"
        + $"    var el = document.getElementById('{id}');\n"
        + "    if (!el) return;\n"
        + "    // plotly.js comes with the first chart of the session; wait for it if that chart is still loading.\n"
        + "    if (typeof window.Plotly === 'undefined') { if (attempts++ < 200) setTimeout(draw, 50); return; }\n"
        + "    el.innerHTML = '';\n"
        + "    window.Plotly.newPlot(el, figure.data, figure.layout, config);\n"
        + "  }\n  draw();\n})();\n</script>"

    /// plotly.js itself (for tests and for pages that want it once).
    static member PlotlyJs() : string = plotlyJs.Value

    static member Render(specJson: string) : string =
        use doc = JsonDocument.Parse specJson
        let s = doc.RootElement
        let series =
            match s.TryGetProperty "series" with
            | true, arr ->
                [ for t in arr.EnumerateArray() ->
                    let y = doubles t "y"
                    let x = match doubles t "x" with [||] -> Array.init y.Length float | x -> x
                    str t "name" "", x, y, str t "mode" "lines" ]
            | _ -> []
        let categories =
            match s.TryGetProperty "categories" with
            | true, v when v.ValueKind = JsonValueKind.Array -> [| for c in v.EnumerateArray() -> c.GetString() |]
            | _ -> [||]
        let traces =
            [ for name, x, y, mode in series ->
                if mode = "bar" then Chart.Column(values = y, Keys = categories, Name = name) else
                let mode =
                    match mode with
                    | "markers" -> StyleParam.Mode.Markers
                    | "lines+markers" -> StyleParam.Mode.Lines_Markers
                    | _ -> StyleParam.Mode.Lines
                Chart.Scatter(x = x, y = y, mode = mode, Name = name) ]
        let xs = series |> List.toArray |> Array.collect (fun (_, x, _, _) -> x)
        let ys = series |> List.toArray |> Array.collect (fun (_, _, y, _) -> y)
        let width, height = num s "width" 800, num s "height" 500
        let chart =
            Chart.combine traces
            |> Chart.withTitle (str s "title" "")
            |> Chart.withXAxis (if categories.Length > 0 then LinearAxis.init (Title = Title.init (Text = str s "xTitle" ""), AxisType = StyleParam.AxisType.Category)
                                else axis (str s "xTitle" "") (flag s "logX") xs)
            |> Chart.withYAxis (axis (str s "yTitle" "") (flag s "logY") ys)
            |> Chart.withSize (width, height)
            |> fun c -> if categories.Length > 0 then c |> Chart.withLayout (Layout.init (BarMode = StyleParam.BarMode.Stack)) else c
            // every output path needs plotly.js in the page itself (no network). NB: this mutates the
            // chart's DisplayOptions, which is why it is set once, here.
            |> Chart.withDisplayOptionsStyle (PlotlyJSReference = PlotlyJSReference.Full)
        // standalone HTML page with plotly.js embedded (works offline)
        match str s "htmlPath" null with
        | null -> ()
        | p ->
            Directory.CreateDirectory(Path.GetDirectoryName(Path.GetFullPath p)) |> ignore
            chart |> Chart.saveHtml p
        // PNG via PuppeteerSharp and the Chromium the caller found; a failure comes back as one line.
        let png, pngError =
            match str s "chromium" null with
            | null -> null, null
            | exe ->
                let target =
                    match str s "pngPath" null with
                    | null -> Path.Combine(Path.GetTempPath(), $"deq-chart-{Guid.NewGuid():N}.png")
                    | p -> Path.GetFullPath p
                try
                    PuppeteerSharpRendererOptions.localBrowserExecutablePath <- Some exe
                    let lo = PuppeteerSharp.LaunchOptions(Headless = true, ExecutablePath = exe)
                    lo.Args <- [| "--no-sandbox"; "--disable-gpu"; "--disable-dev-shm-usage" |]
                    PuppeteerSharpRendererOptions.launchOptions <- lo
                    Directory.CreateDirectory(Path.GetDirectoryName target) |> ignore
                    // SavePNG appends ".png" itself: pass the path without it
                    chart |> Chart.savePNG (target.Substring(0, target.Length - 4), Width = width, Height = height)
                    let b64 = Convert.ToBase64String(File.ReadAllBytes target)
                    if isNull (str s "pngPath" null) then File.Delete target
                    b64, null
                with e ->
                    let inner = (match e with :? AggregateException as a -> a.GetBaseException() | e -> e)
                    let line = inner.Message.Split('\n').[0].Trim()
                    null, $"headless Chromium ({exe}) failed: {line}"
        // Plotly.NET leaves the layout's size to its own page ("100%"); inline, the div gives it in pixels
        let figure = Nodes.JsonNode.Parse(GenericChart.toFigureJson chart)
        figure["layout"]["width"] <- Nodes.JsonValue.Create width
        figure["layout"]["height"] <- Nodes.JsonValue.Create height
        let html = inlineHtml (figure.ToJsonString()) (flag s "embedPlotlyJs") png width height
        JsonSerializer.Serialize(dict [ "html", html; "png", png; "pngError", pngError ])
