using Deq.Cli;

try
{
    return Dispatch(args);
}
catch (Exception e) when (e is ArgumentException or InvalidOperationException or IOException or InvalidDataException)
{
    // Bad input and environment problems: one clear line, no stack trace.
    Console.Error.WriteLine($"deq: {e.Message}");
    return 2;
}

static int Dispatch(string[] args) => args.FirstOrDefault() switch
{
    "solvers" => SolverComparison.Run(args[1..]),
    "reproduce" => Reproduce.Run(args[1..]),
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
          reproduce [--scale smoke|small|large|paper] [--only NAME,...]
                  Run every notebook in Deq.Notebooks headless (pinned dotnet-repl) and write
                  the tables, figures and executed notebooks to paper-figures/.
        """);
    return code;
}
