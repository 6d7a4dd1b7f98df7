module Deq.Tests.Native.FreedMemoryTests

open System
open System.IO
open System.Runtime.InteropServices
open Expecto
open Deq.Native

[<DllImport("libc.so.6", EntryPoint = "getenv")>]
extern nativeint private cGetenv(string name)

/// The C environment, which libtorch reads (.NET's Environment keeps its own copy).
let private cEnvironment name =
    match cGetenv name with
    | 0n -> None
    | p -> Some (Marshal.PtrToStringUTF8 p)

let private unset (name: string) = String.IsNullOrEmpty(Environment.GetEnvironmentVariable name)

[<Tests>]
let freedMemory =
    testList "FreedMemory" [
        test "fixes the mmap threshold and advises huge pages to libtorch through the C environment" {
            let status = FreedMemory.Apply()
            let ours = OperatingSystem.IsLinux() && unset FreedMemory.Variable && unset "MALLOC_MMAP_THRESHOLD_"
            if ours then
                Expect.stringStarts status $"mmap threshold {FreedMemory.DefaultThresholdBytes} B" status
                let kernel = "/sys/kernel/mm/transparent_hugepage/enabled"
                let kernelHasThp = File.Exists kernel && not ((File.ReadAllText kernel).Contains "[never]")
                if kernelHasThp && unset FreedMemory.HugePagesVariable then
                    Expect.stringContains status "huge pages advised" status
                    Expect.equal (cEnvironment FreedMemory.HugePagesVariable) (Some "1") "c10's switch in the C environment"
                    Expect.equal (FreedMemory.HugePagesInEffect()) (Nullable true) "a fresh 4 MiB tensor's mapping is advised huge (smaps' hg flag)"
            Expect.equal (FreedMemory.Apply()) status "idempotent"
        }
    ]
