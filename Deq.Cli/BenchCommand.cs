namespace Deq.Cli;

/// <summary>`deq bench`: memory and speed benchmarks; `deq bench memory-probe` measures one configuration.</summary>
internal static class BenchCommand
{
    public static int Run(string[] args) => args.FirstOrDefault() switch
    {
        "memory-probe" => MemoryProbeCommand.Run(args[1..]),
        _ => throw new ArgumentException("deq bench: the full benchmark is not written yet; use `deq bench memory-probe`"),
    };
}
