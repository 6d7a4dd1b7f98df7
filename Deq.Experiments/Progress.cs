namespace Deq.Experiments;

/// <summary>
/// Progress lines from long experiments. They go to the console and, when the notebook runner
/// sets <see cref="FileVariable"/>, to that file, which the runner echoes while a notebook runs
/// (headless kernels show no cell output until the notebook ends).
/// </summary>
public static class Progress
{
    /// <summary>Environment variable naming the progress file.</summary>
    public const string FileVariable = "DEQ_PROGRESS_FILE";

    static readonly object Gate = new();

    /// <summary>Extra sinks, e.g. a notebook display that updates in place.</summary>
    public static event Action<string>? Reported;

    /// <summary>Reports one line.</summary>
    public static void Report(string line)
    {
        Console.WriteLine(line);
        Reported?.Invoke(line);
        if (Environment.GetEnvironmentVariable(FileVariable) is not { Length: > 0 } path) return;
        lock (Gate) File.AppendAllText(path, line + Environment.NewLine);
    }
}
