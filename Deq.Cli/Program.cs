using System.Text.RegularExpressions;
using Deq.Cli;

// Deq.Core first: its initializer sets up the allocator before libtorch's first allocation, which some commands
// would otherwise make (set_num_threads loads libtorch) before they touch a Deq type.
Deq.Native.TorchRuntime.EnsureLoadable();
try
{
    return Dispatch(args);
}
catch (Exception e) when (e is ArgumentException or InvalidOperationException or IOException or UnauthorizedAccessException
                              or InvalidDataException or FormatException or NotSupportedException)
{
    // Bad input and environment problems: one clear line, no stack trace.
    Console.Error.WriteLine($"deq: {OneLine(e)}");
    return 2;
}
catch (Exception e) when (Environment.GetEnvironmentVariable("DEQ_TRACE") is not "1")
{
    // A bug, not bad input: still one line, with the way to the stack trace.
    Console.Error.WriteLine($"deq: internal error ({e.GetType().Name}): {OneLine(e)} Set DEQ_TRACE=1 for the stack trace.");
    return 70;
}

static int Dispatch(string[] args)
{
    var command = args.FirstOrDefault();
    if (command is not null && Usage.Commands.ContainsKey(command) && args.Skip(1).Any(a => a is "--help" or "-h"))
        return Usage.Print(command);
    return command switch
    {
        "solvers" => SolverComparison.Run(args[1..]),
        "reproduce" => Reproduce.Run(args[1..]),
        "train" => TrainCommand.Run(args[1..]),
        "data" => DataCommand.Run(args[1..]),
        "bench" => BenchCommand.Run(args[1..]),
        null or "-h" or "--help" => Usage.Print(null),
        "help" => args.Length <= 1 ? Usage.Print(null) : Usage.Commands.ContainsKey(args[1]) ? Usage.Print(args[1]) : Usage.Unknown(args[1]),
        var other => Usage.Unknown(other),
    };
}

// .NET's argument messages add " (Parameter 'x')" and a second line "Actual value was v."; the text before says it already.
static string OneLine(Exception e)
{
    var m = Regex.Replace(e.Message, @"\s*\(Parameter '[^']*'\)|\s*Actual value was [^\n]*", "");
    return string.Join(" ", m.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries));
}
