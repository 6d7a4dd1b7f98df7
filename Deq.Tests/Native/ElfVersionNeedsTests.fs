module Deq.Tests.Native.ElfVersionNeedsTests

open System
open System.IO
open System.IO.Compression
open Expecto
open Deq.NativeCompat

/// The pristine glue library, straight from the TorchSharp .nupkg (the extracted copy may be patched).
let private pristineGlue () =
    let packages =
        match Option.ofObj (Environment.GetEnvironmentVariable "NUGET_PACKAGES") with
        | None | Some "" -> Path.Combine(Environment.GetFolderPath Environment.SpecialFolder.UserProfile, ".nuget", "packages")
        | Some p -> p
    let nupkg = Path.Combine(packages, "torchsharp", "0.107.0", "torchsharp.0.107.0.nupkg")
    if not (File.Exists nupkg) then None
    else
        use zip = ZipFile.OpenRead nupkg
        match Option.ofObj (zip.GetEntry "runtimes/linux-x64/native/libLibTorchSharp.so") with
        | None -> None
        | Some entry ->
            let target = Path.Combine(Path.GetTempPath(), $"deq-glue-{Guid.NewGuid():N}.so")
            entry.ExtractToFile target
            Some target

[<Tests>]
let elfVersionNeeds =
    testList "GLIBCXX_3.4.32 weakening" [
        test "weakens exactly that need, idempotently, leaving the others alone" {
            match pristineGlue () with
            | None -> skiptest "torchsharp.0.107.0.nupkg is not in the NuGet cache"
            | Some glue ->
                try
                    let before = ElfVersionNeeds.Read glue
                    let target = before |> Seq.filter (fun n -> n.Version = ElfVersionNeeds.MissingGlibcxx) |> List.ofSeq
                    Expect.equal target.Length 1 "the shipped glue needs GLIBCXX_3.4.32 once"
                    Expect.isFalse target.Head.Weak "and not weakly"
                    let changed = ElfVersionNeeds.Weaken(glue, ElfVersionNeeds.MissingGlibcxx)
                    Expect.equal changed.Count 1 "one need changed"
                    let after = ElfVersionNeeds.Read glue
                    for b, a in Seq.zip before after do
                        Expect.equal (a.File, a.Version) (b.File, b.Version) "same needs in the same order"
                        Expect.equal a.Weak (b.Weak || b.Version = ElfVersionNeeds.MissingGlibcxx) $"only {ElfVersionNeeds.MissingGlibcxx} became weak"
                    Expect.equal (ElfVersionNeeds.Weaken(glue, ElfVersionNeeds.MissingGlibcxx).Count) 0 "second run changes nothing"
                finally
                    File.Delete glue
        }

        test "a file that is not ELF is a clear error" {
            let path = Path.GetTempFileName()
            try
                File.WriteAllText(path, "not an ELF file at all, but long enough to have a header of sixty-four bytes")
                let e = Expect.throwsC (fun () -> ElfVersionNeeds.Read path |> ignore) id
                Expect.stringContains e.Message "not an ELF file" "names the problem"
            finally
                File.Delete path
        }
    ]
