module Deq.Tests.Native.DeviceTests

open System
open System.Diagnostics
open System.IO
open Expecto
open TorchSharp
open Deq.Native

[<Tests>]
let devices =
    testList "device selection" [
        test "cpu and auto resolve; auto is CUDA exactly when CUDA is available" {
            Expect.equal (Devices.Parse "cpu").``type`` DeviceType.CPU "cpu"
            let expected = if torch.cuda.is_available() then DeviceType.CUDA else DeviceType.CPU
            Expect.equal (Devices.Parse "auto").``type`` expected "auto"
        }

        test "unknown names and unavailable CUDA are clear errors" {
            let e = Expect.throwsC (fun () -> Devices.Parse "tpu" |> ignore) id
            Expect.stringContains e.Message "unknown device 'tpu'" "names the device"
            if not (torch.cuda.is_available()) then
                let e = Expect.throwsC (fun () -> Devices.Parse "cuda:0" |> ignore) id
                Expect.stringContains e.Message "CUDA is not available" "says why"
                Expect.stringContains e.Message "DeqDevice=cuda" "says how"
        }

        test "DEQ_TEST_DEVICE naming an unusable device stops this suite with one line and exit code 2" {
            // cuda:99 is unusable everywhere: no CUDA here, too few devices on a GPU machine.
            let self = match Environment.ProcessPath with null -> failtest "no process path" | path -> path
            let viaDotnet = Path.GetFileNameWithoutExtension(self) = "dotnet"
            let info = ProcessStartInfo(self, RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false)
            if viaDotnet then info.ArgumentList.Add(Reflection.Assembly.GetExecutingAssembly().Location)
            info.ArgumentList.Add "--list-tests"
            info.Environment["DEQ_TEST_DEVICE"] <- "cuda:99"
            use p = match Process.Start info with null -> failtest "the test program did not start" | p -> p
            let stdout, stderr = p.StandardOutput.ReadToEnd(), p.StandardError.ReadToEnd()
            p.WaitForExit()
            Expect.equal p.ExitCode 2 "exit code"
            let lines = stderr.Split('\n', StringSplitOptions.RemoveEmptyEntries)
            Expect.equal lines.Length 1 $"one line on stderr: {stderr}"
            Expect.stringStarts lines[0] "DEQ_TEST_DEVICE=cuda:99: device 'cuda:99'" "names the variable and the device"
            Expect.equal (stdout.Trim()) "" "no test ran or was listed"
        }
    ]
