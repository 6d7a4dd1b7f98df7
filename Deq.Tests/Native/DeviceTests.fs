module Deq.Tests.Native.DeviceTests

open System
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
    ]
