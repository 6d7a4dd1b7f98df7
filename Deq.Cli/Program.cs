using Deq.Cli;

return args.FirstOrDefault() switch
{
    "solvers" => SolverComparison.Run(args[1..]),
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
        """);
    return code;
}
