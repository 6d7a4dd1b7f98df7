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
///              categories:[..] (bars: one label per y), stacked (bars on top of each other),
///              htmlPath, pngPath, inline:"require"|"full"|"png"|"none", chromium }
/// Returns the HTML fragment to display inline ("" when inline = "none").
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

    static member Render(specJson: string) : string =
        use doc = JsonDocument.Parse specJson
        let s = doc.RootElement
        let categories =
            match s.TryGetProperty "categories" with
            | true, v when v.ValueKind = JsonValueKind.Array -> [| for c in v.EnumerateArray() -> c.GetString() |]
            | _ -> [||]
        let traces =
            match s.TryGetProperty "series" with
            | true, arr ->
                [ for t in arr.EnumerateArray() ->
                    let y = doubles t "y"
                    let x = match doubles t "x" with [||] -> Array.init y.Length float | x -> x
                    let mode =
                        match str t "mode" "lines" with
                        | "markers" -> StyleParam.Mode.Markers
                        | "lines+markers" -> StyleParam.Mode.Lines_Markers
                        | _ -> StyleParam.Mode.Lines
                    if str t "mode" "lines" = "bar" then Chart.Column(values = y, Keys = categories, Name = str t "name" "")
                    else Chart.Scatter(x = x, y = y, mode = mode, Name = str t "name" "") ]
            | _ -> []
        let axisType log = if log then StyleParam.AxisType.Log else StyleParam.AxisType.Linear
        let chart =
            Chart.combine traces
            |> Chart.withTitle (str s "title" "")
            |> Chart.withXAxis (LinearAxis.init (Title = Title.init (Text = str s "xTitle" ""),
                                                 AxisType = (if categories.Length > 0 then StyleParam.AxisType.Category else axisType (flag s "logX"))))
            |> Chart.withYAxis (LinearAxis.init (Title = Title.init (Text = str s "yTitle" ""), AxisType = axisType (flag s "logY")))
            |> Chart.withSize (num s "width" 800, num s "height" 500)
            |> fun c -> if flag s "stacked" then c |> Chart.withLayout (Layout.init (BarMode = StyleParam.BarMode.Stack)) else c
        let withJs (r: PlotlyJSReference) c = c |> Chart.withDisplayOptionsStyle (PlotlyJSReference = r)
        // standalone HTML page with plotly.js embedded (works offline)
        match str s "htmlPath" null with
        | null -> ()
        | p ->
            Directory.CreateDirectory(Path.GetDirectoryName(Path.GetFullPath p)) |> ignore
            chart |> withJs PlotlyJSReference.Full |> Chart.saveHtml p
        // PNG via PuppeteerSharp + system chromium (no browser download)
        match str s "pngPath" null with
        | null -> ()
        | p ->
            let exe =
                match str s "chromium" null with
                | null ->
                    match Environment.GetEnvironmentVariable "DEQ_CHROMIUM" with
                    | null | "" -> "/usr/bin/chromium"
                    | e -> e
                | e -> e
            PuppeteerSharpRendererOptions.localBrowserExecutablePath <- Some exe
            let lo = PuppeteerSharp.LaunchOptions(Headless = true, ExecutablePath = exe)
            lo.Args <- [| "--no-sandbox"; "--disable-gpu"; "--disable-dev-shm-usage" |]
            PuppeteerSharpRendererOptions.launchOptions <- lo
            Directory.CreateDirectory(Path.GetDirectoryName(Path.GetFullPath p)) |> ignore
            // SavePNG appends ".png" itself -> pass the path without extension
            let stem = if p.EndsWith ".png" then p.Substring(0, p.Length - 4) else p
            // the page must carry plotly.js itself (no network needed). NB: withDisplayOptionsStyle
            // mutates the chart's DisplayOptions, so every output path sets the reference explicitly.
            chart |> withJs PlotlyJSReference.Full |> Chart.savePNG (stem, Width = num s "width" 800, Height = num s "height" 500)
        match str s "inline" "require" with
        | "none" -> ""
        // whole plotly.js (~3.6 MB) inside the output: works offline, big notebooks
        | "full" -> chart |> withJs PlotlyJSReference.Full |> GenericChart.toChartHTML
        // static image: renders everywhere (GitHub viewer, offline); needs pngPath
        | "png" ->
            match str s "pngPath" null with
            | null -> failwith "inline = \"png\" needs pngPath"
            | p ->
                let b64 = Convert.ToBase64String(File.ReadAllBytes p)
                let w = num s "width" 800
                $"<img src=\"data:image/png;base64,{b64}\" width=\"{w}\"/>"
        // default, as Plotly.NET.Interactive does: requirejs + plotly.js from the CDN (needs internet in the viewer)
        | _ ->
            let cdn = $"https://cdn.plot.ly/plotly-{Globals.PLOTLYJS_VERSION}.min.js"
            chart |> withJs (PlotlyJSReference.Require cdn) |> GenericChart.toChartHTML
