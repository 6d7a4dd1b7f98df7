namespace Deq.Cli;

/// <summary>`deq --help` and `deq COMMAND --help`: one usage text per command.</summary>
internal static class Usage
{
    public static IReadOnlyDictionary<string, string> Commands { get; } = new Dictionary<string, string>
    {
        ["solvers"] = """
            solvers [--width N] [--batch B] [--rho R] [--seed S] [--tol T]
                    Compare forward iteration, Anderson and Broyden on a random contractive
                    tanh layer: f evaluations, residual and wall time to tolerance.
            """,
        ["reproduce"] = """
            reproduce [--scale smoke|small|large|paper] [--only NAME,...] [--figures DIR] [--root DIR] [--list]
                    Run the notebooks Deq.Notebooks/NN-name.ipynb headless (pinned dotnet-repl) and write
                    the tables, figures and executed notebooks to paper-figures/ (or DIR); --list names them.
            """,
        ["train"] = """
            train --model NAME --corpus DIR [options]
                    Train a registered language model (lstm-tiny, deq-transformer-tiny, ...) on a corpus
                    directory with Adam, warmup + cosine decay and gradient clipping; reports validation
                    perplexity. Ctrl+C stops cleanly and writes the checkpoint.
              --steps N            optimiser steps of the whole run (default 1000)
              --batch B, --bptt L  training columns and segment length (20, 35)
              --lr X, --warmup N, --min-lr X
                                   peak rate, linear warmup steps, rate at the end of the cosine (1e-3, 0, 0)
              --clip C             clip the global gradient norm to C; 0 disables clipping (0.25)
              --seed S             one seed, one run (0)
              --eval-every N, --eval-batch B, --eval-segments N
                                   validation every N steps (0: at the end), its columns, its first N segments
              --checkpoint PATH, --checkpoint-every N
                                   write checkpoints (atomically) at the end, on Ctrl+C and every N steps
              --resume             continue PATH bit-for-bit; with no checkpoint there yet it says so and
                                   starts afresh. A larger --steps extends a finished run: the cosine is a
                                   function of the total, so the remaining steps get the new schedule's rates.
              --force              let a fresh run replace an existing checkpoint (and --log file)
              --skip-nonfinite [N] drop the update of a step whose loss or gradient is not finite, at most N
                                   in a row (bare: 10); without it such a step stops the run, naming it
              --unknown-words error|map
                                   a valid/test word outside the training vocabulary: an error (default),
                                   or mapped to <unk>
              --log FILE.jsonl     JSON lines, one per record; --print-every N console lines (50)
              --device auto|cpu|cuda[:N], --dtype float32|float64
              --forward-solver lean|anderson|broyden|forward, --forward-iters N, --forward-tol T,
              --backward-iters N, --backward-tol T, --solver-memory M
                                   DEQ models only. Without them the preset's solvers stay. A forward option
                                   replaces the forward solver; a backward option or --forward-solver the
                                   implicit adjoint's fixed-point solve, by the same method (default lean: plain
                                   iteration, then Anderson m = 2 forward and damped iteration on the adjoint;
                                   anderson where only --solver-memory is given); --solver-memory both. Limits
                                   not given: forward 30 iterations to relative 1e-4, adjoint 40 to 1e-5;
                                   history anderson 5 (adjoint 3), broyden 30.
                                   They are part of the checkpoint's configuration.
            """,
        ["data"] = """
            data download --corpus ptb|wikitext-2|wikitext-103 --dir DIR [--archive FILE]
                    Fetch the public archive (or use a local one) and put the three split files in DIR.
            data info --dir DIR [--unknown-words error|map]
                    Read a corpus directory and print its vocabulary and token counts.
            """,
        ["bench"] = """
            bench [--quick] [--memory | --paper-memory] [--out FILE]
                    Benchmarks on this machine: training memory against depth (fresh process per
                    configuration), runtime at matched quality, solver overhead, f evaluations to
                    tolerance, f's GFLOP/s, the toy's solver overheads; prints a table, writes
                    paper-figures/benchmarks.json (--quick: paper-figures/benchmarks-quick.json;
                    --out FILE for either). --memory / --paper-memory: only the memory targets / the
                    paper's PTB width, merged into that file.
            bench toy
                    Per-iteration solver overhead over f on the toy DEQ (D 128, batch 64), one thread.
            bench solver
                    The full bench's solver overhead over f at h 512 (DEQ-TrellisNet core), one thread.
            bench memory-probe [--json] [--ledger] [--family trellisnet|transformer] [--mode deq|unrolled]
                  [--iterations N] [--width W] [--seq T] [--batch B] [--broyden-memory M]
                    Peak memory of one training step of one configuration, in this process
                    (--ledger: its memory ledger).
            """,
    };

    /// <summary>Prints the usage of <paramref name="command"/> (null: all) to stdout and returns 0.</summary>
    public static int Print(string? command)
    {
        Console.WriteLine(command is null ? "usage: deq <command> [options]   (deq <command> --help for one command)\n\ncommands:" : "usage:");
        foreach (var (name, text) in Commands)
            if (command is null || command == name)
                Console.WriteLine(string.Join("\n", text.TrimEnd().Split('\n').Select(l => l.StartsWith(' ') ? "  " + l : "  deq " + l)));
        return 0;
    }

    /// <summary>An unknown command: one line on stderr, exit code 2.</summary>
    public static int Unknown(string command)
    {
        Console.Error.WriteLine($"deq: unknown command '{command}'; commands: {string.Join(", ", Commands.Keys)} (deq --help)");
        return 2;
    }
}
