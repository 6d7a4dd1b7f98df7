module Deq.Tests.Data.DownloadTests

open System
open System.IO
open System.IO.Compression
open System.Formats.Tar
open System.Net.Http
open System.Threading.Tasks
open Expecto
open Deq.Data
open Deq.Tests.Support.Files

/// Builds a folder tree of PTB-like files under d/src/simple-examples/data.
let private sources (d: TempDir) (names: string list) =
    let dir = Directory.CreateDirectory(Path.Combine(d.Path, "src", "simple-examples", "data")).FullName
    for n in names do File.WriteAllText(Path.Combine(dir, n), "a b c\n")
    Path.Combine(d.Path, "src")

let private failingHttp () =
    let handler =
        { new HttpMessageHandler() with
            member _.SendAsync(_, _) = Task.FromException<HttpResponseMessage>(HttpRequestException "Name or service not known") }
    new HttpClient(handler)

[<Tests>]
let tests =
    testList "corpus download" [
        test "a .tgz archive is extracted by file name at any depth, and the corpus then loads" {
            use d = new TempDir()
            let src = sources d [ "ptb.train.txt"; "ptb.valid.txt"; "ptb.test.txt"; "README" ]
            let archive = d.File "simple-examples.tgz"
            do
                use f = File.Create archive
                use gz = new GZipStream(f, CompressionLevel.Fastest)
                TarFile.CreateFromDirectory(src, gz, false)
            let out = d.File "ptb"
            let files = CorpusDownload.Extract(archive, out, CorpusLayout.Ptb)
            Expect.equal (files |> Seq.map Path.GetFileName |> List.ofSeq) [ "ptb.train.txt"; "ptb.valid.txt"; "ptb.test.txt" ] "files"
            Expect.equal (Directory.GetFiles out |> Array.length) 3 "no temporaries left, README not copied"
            use c = Corpus.Load(out)
            Expect.equal c.Train.shape.[0] 4L "a b c <eos>"
        }

        test "a .zip archive works; one lacking a file is an error and writes nothing" {
            use d = new TempDir()
            let src = sources d [ "wiki.train.tokens"; "wiki.valid.tokens"; "wiki.test.tokens" ]
            let zip = d.File "wikitext-2-v1.zip"
            ZipFile.CreateFromDirectory(src, zip)
            let files = CorpusDownload.Extract(zip, d.File "wt", CorpusLayout.WikiText)
            Expect.equal files.Count 3 "three files"
            File.Delete(Path.Combine(src, "simple-examples", "data", "wiki.test.tokens"))
            let partial = d.File "partial.zip"
            ZipFile.CreateFromDirectory(src, partial)
            throwsWith<InvalidDataException> [ "partial.zip"; "lacks wiki.test.tokens" ] (fun () ->
                CorpusDownload.Extract(partial, d.File "wt2", CorpusLayout.WikiText) |> ignore) |> ignore
            Expect.isEmpty (Directory.GetFiles(d.File "wt2")) "nothing written"
        }

        test "a checksum mismatch in the archive installs nothing and keeps existing files" {
            use d = new TempDir()
            let src = sources d [ "ptb.train.txt"; "ptb.test.txt" ]
            File.WriteAllBytes(Path.Combine(src, "simple-examples", "data", "ptb.valid.txt"), Array.create 399_782 (byte 'x'))
            let zip = d.File "bad.zip"
            ZipFile.CreateFromDirectory(src, zip)
            let out = Directory.CreateDirectory(d.File "out").FullName
            File.WriteAllText(Path.Combine(out, "ptb.train.txt"), "old\n")
            throwsWith<InvalidDataException> [ "ptb.valid.txt"; "sha256 mismatch" ] (fun () ->
                CorpusDownload.Extract(zip, out, CorpusLayout.Ptb) |> ignore) |> ignore
            Expect.equal (Directory.GetFiles out |> Array.map Path.GetFileName) [| "ptb.train.txt" |] "only the old file"
            Expect.equal (File.ReadAllText(Path.Combine(out, "ptb.train.txt"))) "old\n" "old file untouched"
        }

        test "no network: a clear message with every URL and the --archive way out" {
            use d = new TempDir()
            use http = failingHttp ()
            let run () = CorpusDownload.DownloadAsync("ptb", d.File "ptb", http).GetAwaiter().GetResult() |> ignore
            throwsWith<IOException> [ "could not download ptb"; "simple-examples.tgz"; "Name or service not known"; "--archive" ] run |> ignore
            throwsWith<ArgumentException> [ "unknown corpus 'ptc'"; "wikitext-103" ] (fun () -> CorpusDownload.Source "ptc" |> ignore) |> ignore
        }
    ]
