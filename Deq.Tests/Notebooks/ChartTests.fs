/// Deq.Charts as the notebooks use it: what a chart carries inline, how the kernels' formatter
/// convention sees it, the PNG policy without Chromium, and readable axes. The notebook itself runs
/// under Jupyter in .ci/notebook-charts.
module Deq.Tests.Notebooks.ChartTests

open System
open System.IO
open System.Text.RegularExpressions
open Expecto
open Deq.Charts
open Deq.Tests.Support.Files

/// The backend lives in Deq.Charts' own output (bin/<configuration>/net10.0/<rid>/plotly), which this
/// test build also produced; point the facade at it unless the caller already did.
let private useBuiltBackend () =
    if String.IsNullOrEmpty(Environment.GetEnvironmentVariable "DEQ_CHARTS_BACKEND") then
        // AppContext.BaseDirectory = <root>/Deq.Tests/bin/<configuration>/<tfm>/<rid>/
        let up (d: DirectoryInfo) = nonNull d.Parent
        let rid = DirectoryInfo(AppContext.BaseDirectory.TrimEnd(Path.DirectorySeparatorChar))
        let tfm = up rid
        let configuration = up tfm
        let root = (configuration |> up |> up |> up).FullName
        let dir = Path.Combine(root, "Deq.Notebooks", "Charts", "Deq.Charts", "bin", configuration.Name, tfm.Name, rid.Name, "plotly")
        Environment.SetEnvironmentVariable("DEQ_CHARTS_BACKEND", dir)

/// Runs f with the facade's settings changed, restoring them afterwards.
let private withSettings (png: PngPolicy) (chromium: string option) (embedding: PlotlyJsEmbedding) (f: unit -> unit) =
    useBuiltBackend ()
    let saved = Plot.Png, Plot.Chromium, Plot.PlotlyJs
    Plot.Png <- png
    Plot.Chromium <- Option.toObj chromium
    Plot.PlotlyJs <- embedding
    try f ()
    finally
        let p, c, e = saved
        Plot.Png <- p
        Plot.Chromium <- c
        Plot.PlotlyJs <- e

let private residuals = [| Series("solver", [| 1.0; 2.0; 3.0 |], [| 1.0; 1e-3; 1e-8 |], "lines+markers") |]
let private plotlyJs = "* plotly.js v"

/// The formatter the .NET Interactive kernels build from a type, by their convention: an attribute
/// named TypeFormatterSourceAttribute, a source with CreateTypeFormatters(), formatters with MimeType
/// and Format(object, TextWriter).
let private kernelView (value: obj) =
    let attribute = value.GetType().GetCustomAttributes(true) |> Array.find (fun a -> a.GetType().Name = "TypeFormatterSourceAttribute")
    let get (name: string) (o: obj) = (nonNull (o.GetType().GetProperty name)).GetValue o |> nonNull
    let call (name: string) (o: obj) (args: obj array) = (nonNull (o.GetType().GetMethod name)).Invoke(o, args) |> nonNull
    let mimeTypes = get "PreferredMimeTypes" attribute :?> string array
    let source = Activator.CreateInstance(get "FormatterSourceType" attribute :?> Type) |> nonNull
    let formatters = call "CreateTypeFormatters" source [||] :?> Collections.IEnumerable |> Seq.cast<obj> |> List.ofSeq
    let format mime =
        let formatter = formatters |> List.find (fun f -> get "MimeType" f :?> string = mime)
        use writer = new StringWriter()
        let ok = call "Format" formatter [| value; writer |] :?> bool
        if ok then Some(writer.ToString()) else None
    mimeTypes, format

/// The last "name":{...} object of the figure JSON in a chart's inline HTML (the template comes first).
let private axisJson (html: string) (name: string) =
    let m = Regex.Matches(html, "\"" + name + "\":\\{\"title\":\\{\"text\"[^}]*\\}[^}]*\\}")
    Expect.isGreaterThan m.Count 0 $"{name} in the figure"
    m.[m.Count - 1].Value

[<Tests>]
let tests =
    testList "notebook charts" [
        test "without Chromium a chart writes its HTML page, skips the PNG and says why" {
            withSettings PngPolicy.Auto None PlotlyJsEmbedding.EveryChart (fun () ->
                use dir = new TempDir()
                dir.Write("c.png", "a PNG from an earlier run") |> ignore
                let chart = Plot.Lines("residuals", residuals, logY = true, htmlPath = dir.File "c.html", pngPath = dir.File "c.png")
                Expect.isTrue (File.Exists(dir.File "c.html")) "HTML page written"
                Expect.stringContains (File.ReadAllText(dir.File "c.html")) plotlyJs "the page embeds plotly.js"
                Expect.isFalse (File.Exists(dir.File "c.png")) "no PNG (not even an earlier run's)"
                Expect.isNone (Option.ofObj chart.Png) "no PNG bytes"
                Expect.stringContains (nonNull chart.PngSkipped) "Chromium" "says why"
                Expect.isFalse (chart.InlineHtml.Contains "<img") "no static fallback image"
                let mimeTypes, _ = kernelView chart
                Expect.sequenceEqual mimeTypes [| "text/html"; "text/plain" |] "no image/png output")
        }

        test "a series whose x and y lengths differ is an error that names it" {
            throwsWith<ArgumentException> [ "'bad'"; "3 x values but 2 y values" ] (fun () ->
                Plot.Lines("t", [| Series("bad", [| 1.0; 2.0; 3.0 |], [| 1.0; 2.0 |]) |]) |> ignore) |> ignore
        }

        test "NaN and infinite values draw as gaps" {
            withSettings PngPolicy.Off None PlotlyJsEmbedding.EveryChart (fun () ->
                let chart = Plot.Lines("gaps", [| Series("s", [| 1.0; 2.0; 3.0 |], [| 1.0; nan; infinity |]) |], logY = true)
                Expect.stringContains chart.InlineHtml "\"y\":[1.0,\"NaN\",\"NaN\"]" "gaps in y")
        }

        test "DEQ_PNG=require makes a missing Chromium an error that names it" {
            withSettings PngPolicy.Require None PlotlyJsEmbedding.EveryChart (fun () ->
                throwsWith<InvalidOperationException> [ "DEQ_PNG=require"; "Chromium" ] (fun () ->
                    Plot.Lines("residuals", residuals) |> ignore) |> ignore)
        }

        test "the session's first chart carries plotly.js, later ones draw with it; or every chart when asked" {
            withSettings PngPolicy.Off None PlotlyJsEmbedding.OncePerSession (fun () ->
                Plot.ResetSession()
                let first, second = Plot.Lines("a", residuals), Plot.Lines("b", residuals)
                Expect.stringContains first.InlineHtml plotlyJs "first chart carries plotly.js"
                Expect.stringContains first.InlineHtml "(function (define, module, exports)" "plotly.js sets window.Plotly even under require.js"
                Expect.isFalse (second.InlineHtml.Contains plotlyJs) "second chart reuses it"
                for c in [ first; second ] do
                    Expect.stringContains c.InlineHtml "window.Plotly.newPlot(el, figure.data, figure.layout, config)" "draws"
                Plot.PlotlyJs <- PlotlyJsEmbedding.EveryChart
                Expect.stringContains (Plot.Lines("c", residuals).InlineHtml) plotlyJs "every chart when asked")
        }

        test "the kernels' formatter convention shows a chart with its PNG as text/html, image/png and text/plain" {
            let png = [| 0x89uy; byte 'P'; byte 'N'; byte 'G'; 13uy; 10uy; 26uy; 10uy |]
            let chart = ChartWithImage("t", "<div class=\"deq-chart\"></div>", "/x/t.html", "/x/t.png", png)
            let mimeTypes, format = kernelView chart
            Expect.sequenceEqual mimeTypes [| "text/html"; "image/png"; "text/plain" |] "one output, three MIME types"
            Expect.equal (format "image/png") (Some(Convert.ToBase64String png)) "image/png is the base64 PNG"
            Expect.equal (format "text/html") (Some chart.InlineHtml) "text/html is the inline chart"
            Expect.stringContains (format "text/plain" |> Option.defaultValue "") "/x/t.png" "text/plain names the file"
        }

        test "axes print exponents as powers, and a narrow log axis labels every tick" {
            withSettings PngPolicy.Off None PlotlyJsEmbedding.EveryChart (fun () ->
                let narrow = [| Series("ppl", [| 1e-6; 1e-4; 1e-2 |], [| 1200.0; 1500.0; 2400.0 |], "lines") |]
                let html = Plot.Lines("ppl", narrow, xTitle = "tol", yTitle = "ppl", logX = true, logY = true).InlineHtml
                Expect.stringContains (axisJson html "yaxis") "\"tickformat\":\"~g\"" "1200..2400 on a log axis: every tick labelled"
                Expect.stringContains (axisJson html "xaxis") "\"exponentformat\":\"power\"" "1e-6..1e-2: powers, not 100μ"
                let linear = Plot.Lines("lin", residuals, xTitle = "x", yTitle = "y").InlineHtml
                Expect.stringContains (axisJson linear "yaxis") "\"exponentformat\":\"power\"" "linear axes too")
        }

        test "where Chromium is found a chart has a real PNG beside its HTML (skipped without Chromium)" {
            match Option.ofObj Plot.Chromium with
            | None -> skiptest "no Chromium on this machine"
            | Some chromium ->
                withSettings PngPolicy.Require (Some chromium) PlotlyJsEmbedding.EveryChart (fun () ->
                    use dir = new TempDir()
                    let chart = Plot.Lines("residuals", residuals, logY = true, pngPath = dir.File "c.png", width = 400, height = 300)
                    Expect.isTrue (File.Exists(dir.File "c.png")) "PNG written"
                    Expect.sequenceEqual (nonNull chart.Png).[0..7] [| 0x89uy; byte 'P'; byte 'N'; byte 'G'; 13uy; 10uy; 26uy; 10uy |] "PNG bytes"
                    Expect.stringContains chart.InlineHtml "<img src=\"data:image/png;base64," "static image until plotly.js draws"
                    let mimeTypes, _ = kernelView chart
                    Expect.contains mimeTypes "image/png" "image/png output")
        }
    ]
