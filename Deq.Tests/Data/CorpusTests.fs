module Deq.Tests.Data.CorpusTests

open System
open System.IO
open System.Diagnostics
open Expecto
open TorchSharp
open Deq.Data
open Deq.Tests.Support.Files

let private ids (t: torch.Tensor) = t.data<int64>().ToArray() |> Array.map int

/// A tiny PTB-layout corpus.
let private tinyPtb (d: TempDir) (valid: string) =
    d.Write("ptb.train.txt", " a b  c \n\nb a\n") |> ignore
    d.Write("ptb.valid.txt", valid) |> ignore
    d.Write("ptb.test.txt", "c\n") |> ignore

[<Tests>]
let tests =
    testList "corpus" [
        test "words per line plus <eos>, blank lines included, vocabulary in first-occurrence order" {
            use d = new TempDir()
            tinyPtb d "a b\n"
            use c = Corpus.Load(d.Path)
            Expect.equal (List.ofSeq c.Vocabulary.Words) [ "a"; "b"; "c"; "<eos>" ] "vocabulary"
            Expect.equal (ids c.Train) [| 0; 1; 2; 3; 3; 1; 0; 3 |] "train ids"
            Expect.equal (ids c.Valid) [| 0; 1; 3 |] "valid ids"
            Expect.equal c.Train.dtype torch.ScalarType.Int64 "int64"
            Expect.equal c.Name "ptb" "name"
        }

        test "WikiText and plain layouts are found; the name is the folder's" {
            for train, valid, test in [ "wiki.train.tokens", "wiki.valid.tokens", "wiki.test.tokens"; "train.txt", "valid.txt", "test.txt" ] do
                use d = new TempDir()
                let sub = Directory.CreateDirectory(Path.Combine(d.Path, "wikitext-9")).FullName
                File.WriteAllText(Path.Combine(sub, train), " = T = \n\n x y\n")
                File.WriteAllText(Path.Combine(sub, valid), "x\n")
                File.WriteAllText(Path.Combine(sub, test), "y\n")
                use c = Corpus.Load(sub)
                Expect.equal c.Train.shape.[0] 8L $"{train}: 3 words, <eos>, <eos>, 2 words, <eos>"
                Expect.equal c.Name "wikitext-9" "name"
        }

        test "an unknown word in valid names file, line and word; MapToUnk maps it when <unk> exists" {
            use d = new TempDir()
            tinyPtb d "a\nb zebra\n"
            let e = throwsWith<InvalidDataException> [ "ptb.valid.txt:2"; "'zebra'" ] (fun () -> Corpus.Load(d.Path) |> ignore)
            Expect.isFalse (e.Message.Contains "MapToUnk") "no <unk> in this vocabulary, so no hint"
            d.Write("ptb.train.txt", "a <unk> b\n") |> ignore
            use c = Corpus.Load(d.Path, CorpusOptions(Unknown = UnknownWords.MapToUnk))
            Expect.equal (ids c.Valid) [| 0; 3; 2; 1; 3 |] "zebra -> <unk>"
            throwsWith<InvalidDataException> [ "'zebra'"; "MapToUnk" ] (fun () -> Corpus.Load(d.Path) |> ignore) |> ignore
        }

        test "a missing file or folder names it and gives the download command" {
            use d = new TempDir()
            d.Write("ptb.train.txt", "a\n") |> ignore
            d.Write("ptb.test.txt", "a\n") |> ignore
            throwsWith<FileNotFoundException> [ "ptb.valid.txt"; "deq data download --corpus ptb" ] (fun () -> Corpus.Load(d.Path) |> ignore) |> ignore
            throwsWith<DirectoryNotFoundException> [ "nowhere"; "deq data download" ] (fun () -> Corpus.Load(d.File "nowhere") |> ignore) |> ignore
            use empty = new TempDir()
            throwsWith<FileNotFoundException> [ "holds no corpus"; "wiki.train.tokens" ] (fun () -> Corpus.Load(empty.Path) |> ignore) |> ignore
        }

        test "an empty training file, a binary file and invalid UTF-8 are errors naming the file" {
            use d = new TempDir()
            tinyPtb d "a\n"
            d.Write("ptb.train.txt", "") |> ignore
            throwsWith<InvalidDataException> [ "ptb.train.txt"; "empty" ] (fun () -> Corpus.Load(d.Path) |> ignore) |> ignore
            File.WriteAllBytes(d.File "ptb.train.txt", [| 0x61uy; 0x0Auy; 0x7Fuy; 0x45uy; 0x4Cuy; 0x46uy; 0uy; 1uy |])
            throwsWith<InvalidDataException> [ "ptb.train.txt:2"; "binary" ] (fun () -> Corpus.Load(d.Path) |> ignore) |> ignore
            File.WriteAllBytes(d.File "ptb.train.txt", [| 0x61uy; 0x0Auy; 0xFFuy; 0xFEuy; 0x0Auy |])
            throwsWith<InvalidDataException> [ "ptb.train.txt"; "UTF-8" ] (fun () -> Corpus.Load(d.Path) |> ignore) |> ignore
        }

        test "invalid UTF-8 far into a file names its own line (not the first line of the read buffer)" {
            use d = new TempDir()
            tinyPtb d "a\n"
            let good = String.replicate 69 "a b c\n" |> Text.Encoding.UTF8.GetBytes
            File.WriteAllBytes(d.File "ptb.train.txt", Array.concat [ good; [| 0x61uy; 0x20uy; 0xC3uy; 0x28uy; 0x0Auy |]; Text.Encoding.UTF8.GetBytes "b a\n" ])
            let e = throwsWith<InvalidDataException> [ "ptb.train.txt:70:"; "UTF-8"; "0xC3"; "byte 3" ] (fun () -> Corpus.Load(d.Path) |> ignore)
            Expect.isFalse (e.Message.Contains "\n") "one line"
            // CRLF line ends read as LF ones; a line without a final newline still counts.
            File.WriteAllBytes(d.File "ptb.train.txt", Text.Encoding.UTF8.GetBytes " a b  c \r\n\r\nb a")
            use c = Corpus.Load(d.Path)
            Expect.equal (ids c.Train) [| 0; 1; 2; 3; 3; 1; 0; 3 |] "same ids as the LF file"
        }

        test "a file given as the corpus directory is an error naming its folder" {
            use d = new TempDir()
            tinyPtb d "a\n"
            throwsWith<System.ArgumentException> [ "ptb.train.txt is a file"; "directory"; d.Path ] (fun () -> Corpus.Load(d.File "ptb.train.txt") |> ignore) |> ignore
        }

        test "a known file name and size with other content is a checksum error with both digests" {
            use d = new TempDir()
            tinyPtb d ""
            File.WriteAllBytes(d.File "ptb.valid.txt", Array.create 399_782 (byte 'a'))
            throwsWith<InvalidDataException> [ "ptb.valid.txt"; "expected c9fe6985"; "actual " ] (fun () -> Corpus.Load(d.Path) |> ignore) |> ignore
        }

        test "PTB and WikiText-2 token counts and vocabularies match the published figures" {
            match sharedData with
            | None -> skiptest "../shared/data is absent"
            | Some root ->
                for dir, train, valid, testCount, vocab in
                    [ "ptb", 929_589L, 73_760L, 82_430L, 10_000
                      "wikitext-2", 2_088_628L, 217_646L, 245_569L, 33_278 ] do
                    let clock = Stopwatch.StartNew()
                    use c = Corpus.Load(Path.Combine(root, dir))
                    printfn $"  {dir}: read and verified in {clock.Elapsed.TotalSeconds:F2} s"
                    Expect.equal c.Train.shape.[0] train $"{dir} train"
                    Expect.equal c.Valid.shape.[0] valid $"{dir} valid"
                    Expect.equal c.Test.shape.[0] testCount $"{dir} test"
                    Expect.equal c.Vocabulary.Count vocab $"{dir} vocabulary"
                    Expect.isTrue (c.Vocabulary.TryId("<eos>").HasValue && c.Vocabulary.TryId("<unk>").HasValue) $"{dir}: <eos> and <unk> in the vocabulary"
        }
    ]
