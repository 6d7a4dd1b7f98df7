/// What the notebooks' commands and printouts show: `deq reproduce` picks only the repository's
/// notebooks, settings print their arrays.
module Deq.Tests.Notebooks.CommandTests

open System
open System.Diagnostics
open System.IO
open Expecto
open Deq.Experiments
open Deq.Experiments.Benchmarks
open Deq.Tests.Support.Files

/// Runs the built deq with args; its exit code and standard output.
let private deq (args: string list) =
    let struct (file, prefix) = DeqExecutable.Locate()
    let psi = ProcessStartInfo(file, RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false)
    for a in Array.append prefix (Array.ofList args) do psi.ArgumentList.Add a
    use p = nonNull (Process.Start psi)
    let out = p.StandardOutput.ReadToEndAsync()
    let err = p.StandardError.ReadToEnd()
    if not (p.WaitForExit 60000) then p.Kill true; failtest "deq did not exit within a minute"
    p.ExitCode, out.Result + err

[<Tests>]
let tests =
    testList "notebook commands" [
        test "printed settings show their arrays' values, not System.Int32[]" {
            let text = sprintf "%A" (MemoryVsDepth.Settings.For ExperimentScale.Smoke)
            Expect.stringContains text "Depths = [2, 8]" "depths"
            Expect.stringContains text "DeqIterations = [5, 30]" "iteration counts"
            Expect.isFalse (text.Contains "System.Int32[]") "no array type names"
            let figure3 = sprintf "%A" (Figure3Settings.For ExperimentScale.Smoke)
            Expect.stringContains figure3 "Tolerances = [0.001, 0.1, 1], ToleranceSweepLimit = 10, Limits = [1, 3, 10]" "sweeps"
            Expect.isFalse (figure3.Contains "ReadOnlyArray") "no collection type names"
        }

        test "deq reproduce runs only NN-name.ipynb notebooks, never a stray nbconvert copy" {
            match (try Some(DeqExecutable.Locate()) with :? InvalidOperationException -> None) with
            | None -> skiptest "Deq.Cli is not built"
            | Some _ ->
                use root = new TempDir()
                let notebooks = Path.Combine(root.Path, "Deq.Notebooks")
                Directory.CreateDirectory notebooks |> ignore
                for name in [ "00-quickstart.ipynb"; "00-quickstart.nbconvert.ipynb"; "01-table1-copy-memory.ipynb"; "Untitled.ipynb"; "scratch-00.ipynb" ] do
                    File.WriteAllText(Path.Combine(notebooks, name), "{}")
                let code, out = deq [ "reproduce"; "--root"; root.Path; "--list" ]
                Expect.equal code 0 out
                let listed = out.Split('\n', StringSplitOptions.RemoveEmptyEntries ||| StringSplitOptions.TrimEntries)
                Expect.sequenceEqual listed [| "00-quickstart.ipynb"; "01-table1-copy-memory.ipynb" |] "the repository's notebooks, in order"
                let code, out = deq [ "reproduce"; "--root"; root.Path; "--list"; "--only"; "quickstart" ]
                Expect.equal (code, out.Trim()) (0, "00-quickstart.ipynb") "--only matches among them"
        }
    ]
