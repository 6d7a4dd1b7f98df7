using Deq.Cli;

try
{
    return Dispatch(args);
}
catch (Exception e) when (e is ArgumentException or InvalidOperationException or IOException or UnauthorizedAccessException)
{
    // Bad input and environment problems: one clear line, no stack trace.
    Console.Error.WriteLine($"deq: {e.Message}");
    return 2;
}

static int Dispatch(string[] args) => args.FirstOrDefault() switch
{
    "solvers" => SolverComparison.Run(args[1..]),
    "reproduce" => Reproduce.Run(args[1..]),
    "train" => TrainCommand.Run(args[1..]),
    "data" => DataCommand.Run(args[1..]),
    "bench" => BenchCommand.Run(args[1..]),
    null or "-h" or "--help" or "help" => Usage(0),
    var other => Usage(2, $"unknown command '{other}'"),
};

static int Usage(int code, string? error = null)
{
    if (error is not null) Console.Error.WriteLine($"deq: {error}");
    Console.WriteLine("""
        usage: deq <command> [options]

        commands:
          solvers [--width N] [--batch B] [--rho R] [--seed S]
                  Compare forward iteration, Anderson and Broyden on a random contractive
                  tanh layer: f evaluations, residual and wall time to tolerance.
          reproduce [--scale smoke|small|large|paper] [--only NAME,...] [--figures DIR] [--list]
                  Run the notebooks Deq.Notebooks/NN-name.ipynb headless (pinned dotnet-repl) and write
                  the tables, figures and executed notebooks to paper-figures/ (or DIR); --list names them.
          train --model NAME --corpus DIR [--steps N] [--batch B] [--bptt L] [--lr X] [--warmup N]
                [--seed S] [--clip C] [--eval-every N] [--eval-segments N] [--checkpoint PATH]
                [--checkpoint-every N] [--resume] [--log FILE.jsonl] [--device auto|cpu|cuda] [--dtype float32|float64]
                  Train a registered language model (lstm-tiny, ...) on a corpus directory with Adam,
                  warmup + cosine decay and gradient clipping; reports validation perplexity.
                  Ctrl+C stops cleanly and writes the checkpoint; --resume continues it bit-for-bit.
          data download --corpus ptb|wikitext-2|wikitext-103 --dir DIR [--archive FILE]
                  Fetch the public archive (or use a local one) and put the three split files in DIR.
          bench [--quick] [--out FILE]
                  Benchmarks on this machine: training memory against depth (fresh process per
                  configuration), runtime at matched quality, solver overhead, f evaluations to
                  tolerance, f's GFLOP/s, the toy's solver overheads; prints a table, writes
                  paper-figures/benchmarks.json (--quick: paper-figures/benchmarks-quick.json;
                  --out FILE for either).
          bench toy
                  Per-iteration solver overhead over f on the toy DEQ (D 128, batch 64), one thread.
          bench memory-probe [--json] [--family trellisnet|transformer] [--mode deq|unrolled]
                [--iterations N] [--width W] [--seq T] [--batch B] [--broyden-memory M]
                  Peak memory of one training step of one configuration, in this process.
          data info --dir DIR
                  Read a corpus directory and print its vocabulary and token counts.
        """);
    return code;
}
