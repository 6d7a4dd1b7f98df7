/// The built `deq` program on bad input (issue #16): one line `deq: ...` on stderr, exit code 2, no stack trace.
/// Every case prints "| case | stderr line |" (run with --debug to see them): docs/bad-input.md quotes them.
module Deq.Tests.Cli.CliTests

open System
open System.Diagnostics
open System.IO
open System.Text
open Expecto
open Deq.Native
open Deq.Experiments.Benchmarks
open Deq.Tests.Support.Files

/// deq's exit code, stdout and stderr, run in `cwd`.
let private deq (cwd: string) (args: string list) =
    let struct (file, prefix) = DeqExecutable.Locate()
    let psi = ProcessStartInfo(file, RedirectStandardOutput = true, RedirectStandardError = true, WorkingDirectory = cwd)
    for a in Seq.append prefix args do psi.ArgumentList.Add a
    psi.Environment.["DEQ_DEVICE"] <- "cpu"
    use p = match Option.ofObj (Process.Start psi) with Some p -> p | None -> failwith $"could not start {file}"
    let out = p.StandardOutput.ReadToEndAsync()
    let err = p.StandardError.ReadToEndAsync()
    if not (p.WaitForExit 120_000) then p.Kill true; failtest $"deq {args} did not finish in 2 minutes"
    p.ExitCode, out.Result, err.Result

let private built = lazy (try DeqExecutable.Locate() |> ignore; true with :? InvalidOperationException -> false)

/// A learnable tiny PTB-layout corpus in d (vocabulary: 7 words and <eos>).
let private corpus (d: TempDir) =
    let words = [| "the"; "cat"; "sat"; "on"; "a"; "mat"; "." |]
    let text n = String.Join("", Array.init n (fun i -> String.Join(" ", words.[.. 2 + (i * 3) % 5]) + "\n"))
    d.Write("ptb.train.txt", text 60) |> ignore
    d.Write("ptb.valid.txt", text 20) |> ignore
    d.Write("ptb.test.txt", text 10) |> ignore
    d.Path

let private train = [ "train"; "--corpus"; "."; "--steps"; "2"; "--batch"; "3"; "--bptt"; "5"; "--eval-segments"; "1" ]

/// Expects the refusal: exit 2, one stderr line "deq: ..." holding every fragment, no stack trace.
let private refusal (d: TempDir) (case: string) (args: string list) (fragments: string list) (code: int, out: string, err: string) =
    let lines = err.Split('\n', StringSplitOptions.RemoveEmptyEntries)
    printfn "| %s | `%s` |" case (err.Trim().Replace(d.Path, "DIR"))
    Expect.equal code 2 $"exit code of deq {args} (stderr: {err}, stdout: {out})"
    Expect.equal lines.Length 1 $"one line on stderr: {err}"
    Expect.stringStarts lines.[0] "deq: " "prefixed"
    for f in fragments do Expect.stringContains lines.[0] f "names the problem"
    Expect.isFalse (err.Contains "   at " || err.Contains "Unhandled exception") "no stack trace"

/// One test per case. The processes of a list start together, four at a time (each mostly waits on
/// TorchSharp's loading), and each test checks its own.
let private cases (name: string) (list: (string * (TempDir -> string list * string list)) list) =
    let runs = lazy (
        let all = list |> List.toArray |> Array.map (fun (case, setup) -> case, setup, new TempDir())
        let results = Array.zeroCreate all.Length
        Threading.Tasks.Parallel.For(0, all.Length, Threading.Tasks.ParallelOptions(MaxDegreeOfParallelism = 4), fun i ->
            let case, setup, d = all.[i]
            results.[i] <- (case, d, (try let args, fragments = setup d in Ok(args, fragments, deq d.Path args) with e -> Error e)))
        |> ignore
        results)
    testList name [
        for i, (case, _) in List.indexed list ->
            test case {
                if not built.Value then skiptest "deq (Deq.Cli) is not built"
                let _, d, result = runs.Force().[i]
                use d = d
                match result with
                | Error e -> raise e
                | Ok(args, fragments, run) -> refusal d case args fragments run
            }
    ]

/// A finished 2-step run's checkpoint, written by deq itself, as bytes.
let private goodCheckpoint = lazy (
    use d = new TempDir()
    corpus d |> ignore
    let code, out, err = deq d.Path (train @ [ "--checkpoint"; "run.ckpt" ])
    if code <> 0 then failwith $"deq train failed: {err}{out}"
    File.ReadAllBytes(d.File "run.ckpt"))

/// Writes the damaged checkpoint and the corpus; resuming it must fail naming it, and leave it as it was.
let private damaged (damage: byte[] -> byte[]) fragments (d: TempDir) =
    corpus d |> ignore
    File.WriteAllBytes(d.File "run.ckpt", damage (goodCheckpoint.Force()))
    train @ [ "--checkpoint"; "run.ckpt"; "--resume" ], "run.ckpt" :: fragments

let private flipAt (i: int) (b: byte[]) = let c = Array.copy b in c.[i] <- c.[i] ^^^ 0x10uy; c

[<Tests>]
let checkpoints =
    cases "deq bad input: checkpoints" [
        "truncated checkpoint", damaged (fun b -> b.[.. b.Length / 2]) [ "truncated"; "Restore it" ]
        "zero-byte checkpoint", damaged (fun _ -> [||]) [ "not a Deq checkpoint"; "0 bytes" ]
        "one byte flipped", damaged (fun b -> flipAt (b.Length - 7) b) [ "corrupted"; "sha256" ]
        "format version flipped", damaged (flipAt 8) [ "format version 17"; "reads version 1" ]
        "padded checkpoint", damaged (fun b -> Array.append b (Array.zeroCreate 100)) [ "padded"; "(100 extra)" ]
        "a text file as checkpoint", damaged (fun _ -> Encoding.UTF8.GetBytes "step=200\nlr=0.1\n") [ "not a Deq checkpoint" ]
    ]

let private ptbWith (file: string) (content: byte[]) (d: TempDir) =
    corpus d |> ignore
    File.WriteAllBytes(d.File file, content)
    [ "data"; "info"; "--dir"; d.Path ]

[<Tests>]
let corpora =
    cases "deq bad input: corpora" [
        "binary line in a split", fun d -> ptbWith "ptb.train.txt" (Array.append (Encoding.UTF8.GetBytes "a b\nc d\n") [| 0x7Fuy; 0x45uy; 0x4Cuy; 0x46uy; 0uy; 1uy; 0x0Auy |]) d, [ "ptb.train.txt:3:"; "NUL byte"; "binary" ]
        "non-UTF-8 bytes on line 70", fun d ->
            ptbWith "ptb.train.txt" (Array.concat [ Encoding.UTF8.GetBytes(String.replicate 69 "the cat\n"); [| 0x6Duy; 0xE9uy; 0x74uy; 0x0Auy |] ]) d,
            [ "ptb.train.txt:70:"; "not valid UTF-8"; "0xE9" ]
        "empty train split", fun d -> ptbWith "ptb.train.txt" [||] d, [ "ptb.train.txt"; "empty" ]
        "unknown word in valid", fun d -> ptbWith "ptb.valid.txt" (Encoding.UTF8.GetBytes "the cat\nthe zebra\n") d, [ "ptb.valid.txt:2:"; "'zebra'"; "not in the training vocabulary" ]
        "unknown word in test (train has <unk>)", fun d ->
            corpus d |> ignore
            File.AppendAllText(d.File "ptb.train.txt", "<unk> cat\n")
            File.WriteAllText(d.File "ptb.test.txt", "dog\n")
            train, [ "ptb.test.txt:1:"; "'dog'"; "--unknown-words map" ]
        "PTB file whose sha256 does not match", fun d -> ptbWith "ptb.valid.txt" (Array.create 399_782 (byte 'a')) d, [ "ptb.valid.txt"; "sha256 mismatch"; "expected c9fe6985"; "download it again" ]
        "--corpus names a file", fun d -> corpus d |> ignore; [ "train"; "--corpus"; d.File "ptb.train.txt" ], [ "is a file"; "directory" ]
        "--corpus names no folder", fun d -> [ "train"; "--corpus"; d.File "nowhere" ], [ "does not exist"; "deq data download" ]
    ]

[<Tests>]
let options =
    cases "deq bad input: options" [
        "--lr 1e30 (diverges)", fun d -> corpus d |> ignore; train @ [ "--lr"; "1e30" ], [ "step 2"; "diverged"; "update was not applied"; "--skip-nonfinite" ]
        "--lr 1e30 --skip-nonfinite", fun d -> corpus d |> ignore; train @ [ "--lr"; "1e30"; "--skip-nonfinite" ], [ "evaluation after step 2"; "diverged" ]
        "--lr 1e39 (overflows float32)", fun d -> corpus d |> ignore; train @ [ "--lr"; "1e39" ], [ "--lr"; "overflows"; "Float32" ]
        "--lr -1", fun d -> corpus d |> ignore; train @ [ "--lr"; "-1" ], [ "--lr"; "positive" ]
        "--steps 0", fun d -> corpus d |> ignore; [ "train"; "--corpus"; "."; "--steps"; "0" ], [ "--steps"; "must be positive" ]
        "--steps abc", fun d -> [ "train"; "--corpus"; "."; "--steps"; "abc" ], [ "--steps must be an integer" ]
        "unknown option", fun d -> [ "train"; "--corpus"; "."; "--stpes"; "3" ], [ "unknown option --stpes" ]
        "unknown command", fun _ -> [ "trian" ], [ "unknown command 'trian'"; "train"; "deq --help" ]
        "--forward-solver for an LSTM", fun d -> [ "train"; "--corpus"; "."; "--forward-solver"; "anderson" ], [ "--forward-solver"; "DEQ models" ]
        "--forward-solver unknown", fun d -> [ "train"; "--model"; "deq-trellisnet-tiny"; "--corpus"; "."; "--forward-solver"; "newton" ], [ "--forward-solver must be one of lean, anderson, broyden, forward" ]
        "--forward-tol 0", fun d -> [ "train"; "--model"; "deq-trellisnet-tiny"; "--corpus"; "."; "--forward-tol"; "0" ], [ "--forward-tol must be a positive finite number" ]
        "--solver-memory with forward iteration", fun d -> [ "train"; "--model"; "deq-trellisnet-tiny"; "--corpus"; "."; "--forward-solver"; "forward"; "--solver-memory"; "5" ], [ "--solver-memory"; "no history" ]
        "--solver-memory with the lean pair", fun d -> [ "train"; "--model"; "deq-trellisnet-tiny"; "--corpus"; "."; "--forward-solver"; "lean"; "--solver-memory"; "5" ], [ "--solver-memory"; "lean pair" ]
    ]

[<Tests>]
let files =
    cases "deq bad input: files" [
        "fresh run on an existing checkpoint", fun d ->
            corpus d |> ignore
            File.WriteAllBytes(d.File "run.ckpt", goodCheckpoint.Force())
            train @ [ "--checkpoint"; "run.ckpt" ], [ "run.ckpt already exists"; "step 2 of 2"; "--resume"; "--force" ]
        "fresh run on an existing --log", fun d ->
            corpus d |> ignore
            d.Write("train.jsonl", "{}\n") |> ignore
            train @ [ "--log"; "train.jsonl" ], [ "--log train.jsonl already exists"; "--force" ]
        "checkpoint directory not writable", fun d ->
            corpus d |> ignore
            d.Write("blocker", "a file where a folder should be") |> ignore
            train @ [ "--checkpoint"; "blocker/run.ckpt" ], [ "not writable"; "blocker is a file, not a folder" ]
        "resume under another --lr", fun d ->
            corpus d |> ignore
            File.WriteAllBytes(d.File "run.ckpt", goodCheckpoint.Force())
            train @ [ "--checkpoint"; "run.ckpt"; "--resume"; "--lr"; "0.01" ], [ "another configuration"; "train.lr: checkpoint 0.001, now 0.01" ]
        "--checkpoint names a directory", fun d ->
            corpus d |> ignore
            Directory.CreateDirectory(d.File "runs") |> ignore
            train @ [ "--checkpoint"; "runs" ], [ "is a directory"; "give a file path" ]
        "resume with fewer steps than done", fun d ->
            corpus d |> ignore
            File.WriteAllBytes(d.File "run.ckpt", goodCheckpoint.Force())
            [ "train"; "--corpus"; "."; "--steps"; "1"; "--batch"; "3"; "--bptt"; "5"; "--checkpoint"; "run.ckpt"; "--resume" ], [ "at step 2"; "past the 1 steps" ]
    ]

/// Runs deq in d and expects success; returns stdout.
let private succeeds (d: TempDir) (args: string list) =
    let code, out, err = deq d.Path args
    Expect.equal code 0 $"deq {args} exits 0 (stderr: {err})"
    Expect.equal err "" "nothing on stderr"
    out

[<Tests>]
let works =
    testList "deq train files and help" [
        test "the checkpoint is kept when a fresh run is refused, and a damaged one when resuming is" {
            if not built.Value then skiptest "deq is not built"
            use d = new TempDir()
            let args, _ = damaged (fun b -> b.[.. 100]) [] d
            let before = File.ReadAllBytes(d.File "run.ckpt")
            deq d.Path args |> ignore
            deq d.Path (List.filter ((<>) "--resume") args) |> ignore
            Expect.equal (File.ReadAllBytes(d.File "run.ckpt")) before "untouched by both"
        }

        test "--force replaces a checkpoint; stale temporaries are removed; --resume without one says it starts afresh" {
            if not built.Value then skiptest "deq is not built"
            use d = new TempDir()
            corpus d |> ignore
            File.WriteAllBytes(d.File "run.ckpt", goodCheckpoint.Force())
            let stale = d.Write("run.ckpt.deq-tmp-0123abcd", "half a write")
            let out = succeeds d (train @ [ "--checkpoint"; "run.ckpt"; "--force"; "--seed"; "4" ])
            Expect.stringContains out "removed 1 temporary file" "stale temporaries reported"
            Expect.stringContains out "--force: replacing the existing checkpoint" "replacement said"
            Expect.isFalse (File.Exists stale) "removed"
            let fresh = succeeds d (train @ [ "--checkpoint"; "new.ckpt"; "--resume" ])
            Expect.stringContains fresh "--resume: no checkpoint at new.ckpt yet; starting afresh" "said"
            Expect.isTrue (File.Exists(d.File "new.ckpt")) "written"
        }

        test "--clip 0 trains a float32 model; --resume --steps N extends a finished run and says how the rates change" {
            if not built.Value then skiptest "deq is not built"
            use d = new TempDir()
            corpus d |> ignore
            let clip0 = succeeds d (train @ [ "--clip"; "0" ])
            Expect.stringContains clip0 "done: 2 steps" "trained"
            succeeds d (train @ [ "--checkpoint"; "run.ckpt" ]) |> ignore
            let more = succeeds d [ "train"; "--corpus"; "."; "--steps"; "4"; "--batch"; "3"; "--bptt"; "5"; "--eval-segments"; "1"; "--checkpoint"; "run.ckpt"; "--resume" ]
            Expect.stringContains more "extending the run from 2 to 4 steps" "extension said"
            Expect.stringContains more "done: 4 steps" "continued to 4"
        }

        test "solver options reach a DEQ model: the forward solver and the adjoint are the ones asked for" {
            if not built.Value then skiptest "deq is not built"
            use d = new TempDir()
            corpus d |> ignore
            let out = succeeds d [ "train"; "--model"; "deq-trellisnet-tiny"; "--corpus"; "."; "--steps"; "1"; "--batch"; "3"; "--bptt"; "5"; "--eval-segments"; "1"
                                   "--forward-solver"; "broyden"; "--forward-iters"; "6"; "--solver-memory"; "4"; "--backward-tol"; "1e-6" ]
            Expect.stringContains out "forward solver: broyden(m=4, 6 iters, rel 1E-4)" "forward solver"
            Expect.stringContains out "adjoint: implicit(broyden(m=4, 40 iters, rel 1E-6))" "adjoint"
            let steps = out.Split('\n') |> Array.find (fun l -> l.StartsWith "step") |> fun l -> l.Split(" fwd ").[1].Split(' ').[0] |> int
            Expect.isLessThanOrEqual steps 6 "at most --forward-iters forward steps"
        }

        test "limits alone keep the memory-lean pair, with those limits" {
            if not built.Value then skiptest "deq is not built"
            use d = new TempDir()
            corpus d |> ignore
            let out = succeeds d [ "train"; "--model"; "deq-trellisnet-tiny"; "--corpus"; "."; "--steps"; "1"; "--batch"; "3"; "--bptt"; "5"; "--eval-segments"; "1"
                                   "--forward-iters"; "7"; "--backward-iters"; "9" ]
            Expect.stringContains out "forward solver: forward(7 iters, rel 1E-4) or else anderson(m=2, 7 iters, rel 1E-4)" "lean forward"
            Expect.stringContains out "adjoint: implicit(fixed point by forward(9 iters, rel 1E-5) or else forward(damping=0.5, 9 iters, rel 1E-5))" "lean adjoint"
        }

        test "deq sets up the allocator before libtorch's first allocation (bench set_num_threads first and lost huge pages)" {
            if not built.Value then skiptest "deq is not built"
            use d = new TempDir()
            let out = succeeds d [ "bench"; "toy" ]
            Expect.stringContains out "allocator: mmap threshold" "the allocator line"
            Expect.isFalse (out.Contains "NOT in effect" || out.Contains "not advised") out
            let kernel = "/sys/kernel/mm/transparent_hugepage/enabled"
            if File.Exists kernel && not ((File.ReadAllText kernel).Contains "[never]") && String.IsNullOrEmpty(Environment.GetEnvironmentVariable FreedMemory.HugePagesVariable) then
                Expect.stringContains out "huge pages advised" out
        }

        test "deq --help, deq train --help and deq data --help print usage and exit 0" {
            if not built.Value then skiptest "deq is not built"
            use d = new TempDir()
            Expect.stringContains (succeeds d [ "--help" ]) "commands:" "all commands"
            let t = succeeds d [ "train"; "--help" ]
            for s in [ "--resume"; "--force"; "--skip-nonfinite"; "--forward-solver"; "--clip C" ] do Expect.stringContains t s "train options"
            Expect.stringContains (succeeds d [ "data"; "--help" ]) "data info --dir DIR" "data usage"
            Expect.stringContains (succeeds d [ "help"; "bench" ]) "bench [--quick]" "deq help CMD"
        }
    ]
