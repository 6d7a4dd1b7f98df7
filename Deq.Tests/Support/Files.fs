/// Temporary folders and expectations about error messages.
module Deq.Tests.Support.Files

open System
open System.IO
open Expecto
open TorchSharp

/// A fresh empty folder, deleted on Dispose.
type TempDir() =
    let path = Path.Combine(Path.GetTempPath(), "deq-test-" + Guid.NewGuid().ToString("N"))
    do Directory.CreateDirectory path |> ignore
    member _.Path = path
    member _.File(name: string) = Path.Combine(path, name)
    member d.Write(name: string, text: string) = File.WriteAllText(d.File name, text); d.File name
    interface IDisposable with
        member _.Dispose() = try Directory.Delete(path, true) with _ -> ()

/// Runs f, expects an exception of type 'E whose message contains every fragment; returns it.
let throwsWith<'E when 'E :> exn> (fragments: string list) (f: unit -> unit) : 'E =
    let caught =
        try f (); None
        with e -> Some e
    match caught with
    | None -> failtestf "expected %s, nothing was thrown" typeof<'E>.Name
    | Some (:? 'E as e) ->
        for s in fragments do
            Expect.stringContains e.Message s $"message of {typeof<'E>.Name}"
        e
    | Some e -> failtestf "expected %s, got %s: %s" typeof<'E>.Name (e.GetType().Name) e.Message

/// The shared corpus folder (../shared/data from the repository root), when it exists.
let sharedData =
    let candidates =
        [ Path.Combine(Directory.GetCurrentDirectory(), "..", "shared", "data")
          Path.Combine(AppContext.BaseDirectory, "..", "..", "..", "..", "..", "..", "shared", "data")
          "/work/shared/data" ]
    candidates |> List.map Path.GetFullPath |> List.tryFind Directory.Exists

/// Same shape and bit-for-bit equal values.
let sameTensor (a: TorchSharp.torch.Tensor) (b: TorchSharp.torch.Tensor) =
    a.shape = b.shape && a.eq(b).all().ToBoolean()
