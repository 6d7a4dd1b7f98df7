/// The device the solver and implicit-gradient tests run on: DEQ_TEST_DEVICE=cpu (default), cuda or cuda:N.
/// Problems are drawn on the CPU (the same numbers on every device) and moved there. Off the CPU, the
/// tests' main results are also computed on the CPU and must agree in float64.
module Deq.Tests.Support.TestDevice

open System
open Expecto
open TorchSharp

[<Literal>]
let Variable = "DEQ_TEST_DEVICE"

let private requested =
    match Environment.GetEnvironmentVariable Variable with
    | null | "" -> "cpu"
    | name -> name.Trim()

/// The device, or the one line that says why it cannot be used (Deq.Native.Devices words the reason).
let private resolved =
    lazy
        (try Ok(Deq.Native.Devices.Parse requested)
         with :? ArgumentException as e -> Error $"{Variable}={requested}: {e.Message}")

/// None when the requested device is usable, else the line to print; Main stops before running any test.
let problem () = match resolved.Force() with Ok _ -> None | Error line -> Some line

/// The test device (Main has already refused an unusable one).
let device () = match resolved.Force() with Ok d -> d | Error line -> failtest line

let isCpu () = (device ()).``type`` = DeviceType.CPU

/// t on the test device (t itself on the CPU).
let onDevice (t: torch.Tensor) = if isCpu () then t else t.``to``(device ())

/// Float64 zeros of the given shape on device d.
let zerosOn (d: torch.Device) (shape: int list) =
    torch.zeros(shape |> List.map int64 |> Array.ofList, dtype = torch.ScalarType.Float64, device = d)

/// Fails unless the distance between the test device's result and the CPU's is within tol.
let expectAgreement (what: string) (distance: float) (tol: float) =
    if not (distance <= tol) then
        failtestf "%s: %O and CPU differ by %.3g (allowed %.3g)" what (device ()) distance tol

/// Runs compute on the test device; on any other device than the CPU, runs it on the CPU too and fails
/// unless the two values (read by `value`) agree to `tol` in max absolute difference. Returns the device result.
let withCpuCheck (what: string) (tol: float) (value: 'r -> torch.Tensor) (compute: torch.Device -> 'r) : 'r =
    let result = compute (device ())
    if not (isCpu ()) then
        let reference = compute torch.CPU
        expectAgreement what ((value result).cpu().sub(value reference).abs().max().item<float>()) tol
    result
