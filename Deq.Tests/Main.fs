module Deq.Tests.Main

open System
open Expecto
open Expecto.Impl

/// Expecto's printer, remembering the summary for the closing count line.
let private remembering (printer: TestPrinters) (last: TestRunSummary option ref) =
    { printer with
        summary = fun config summary -> async {
            last.Value <- Some summary
            do! printer.summary config summary } }

let private runAll argv =
    // Sequenced: tests seed TorchSharp's global generator, so they must not interleave.
    let last = ref None
    let cli = [ CLIArguments.Printer(remembering defaultConfig.printer last); CLIArguments.Sequenced; CLIArguments.No_Spinner ]
    let exitCode = runTestsInAssemblyWithCLIArgs cli argv
    // CI counts tests by this line standing alone, so it comes after Expecto's logging is done.
    match last.Value with
    | Some s ->
        let failed = s.failed.Length + s.errored.Length
        Console.Out.Flush()
        // Straight to the stream: Expecto's console writer pads lines with spaces.
        let line = sprintf "\n%d passed, %d failed, %d skipped\n" s.passed.Length failed s.ignored.Length
        use stdout = Console.OpenStandardOutput()
        stdout.Write(Text.Encoding.UTF8.GetBytes line)
    | None -> ()
    exitCode

[<EntryPoint>]
let main argv =
    // DEQ_TEST_DEVICE names a device that is not there: one line and a failure, never a silent CPU run.
    match Deq.Tests.Support.TestDevice.problem () with
    | Some line -> eprintfn "%s" line; 2
    | None -> runAll argv
