using System.Globalization;
using System.Text.Json;
using System.Text.Json.Serialization;

namespace Deq.Training;

/// <summary>Where log records go. A sink is just an <c>Action&lt;LogRecord&gt;</c>; these build the usual ones.</summary>
public static class LogSinks
{
    static readonly JsonSerializerOptions Json = new()
    {
        DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull,
        PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower,
        Converters = { new JsonStringEnumConverter(JsonNamingPolicy.SnakeCaseLower) },
        NumberHandling = JsonNumberHandling.AllowNamedFloatingPointLiterals,
    };

    /// <summary>Does nothing.</summary>
    public static Action<LogRecord> None { get; } = _ => { };

    /// <summary>All of the sinks, in order.</summary>
    public static Action<LogRecord> Combine(params Action<LogRecord>[] sinks) => r => { foreach (var s in sinks) s(r); };

    /// <summary>One JSON object per line (null fields omitted), flushed per record so a crash loses nothing.</summary>
    public static Action<LogRecord> JsonLines(TextWriter writer) => r =>
    {
        writer.WriteLine(ToJson(r));
        writer.Flush();
    };

    /// <summary>A record as one line of JSON.</summary>
    public static string ToJson(LogRecord r) => JsonSerializer.Serialize(r, Json);

    /// <summary>Forwards to an observer, e.g. a notebook's live progress display (OnNext per record).</summary>
    public static Action<LogRecord> Observer(IObserver<LogRecord> observer) => observer.OnNext;

    /// <summary>A human-readable line per record.</summary>
    public static string Format(LogRecord r)
    {
        var s = string.Create(CultureInfo.InvariantCulture,
            $"{r.Phase switch { Phase.Train => "step", Phase.Valid => "valid", _ => "skip" },-5} {r.Step,7}/{r.TotalSteps} loss {r.Loss,7:F4} ppl {r.Perplexity,9:F2}");
        if (r.LearningRate is { } lr) s += string.Create(CultureInfo.InvariantCulture, $" lr {lr:E2}");
        if (r.GradNorm is { } gn) s += string.Create(CultureInfo.InvariantCulture, $" |g| {gn:F3}");
        if (r.Solver is { } st)
        {
            if (st.ForwardSteps is { } fs) s += $" fwd {fs}";
            if (st.ForwardResidual is { } fr) s += string.Create(CultureInfo.InvariantCulture, $" ({fr:E1})");
            if (st.BackwardSteps is { } bs) s += $" bwd {bs}";
            if (st.BackwardResidual is { } br) s += string.Create(CultureInfo.InvariantCulture, $" ({br:E1})");
        }
        s += string.Create(CultureInfo.InvariantCulture, $" {r.WallSeconds,7:F1}s");
        if (r.Memory.RssBytes is { } rss) s += $" rss {rss >> 20}MiB";
        if (r.Memory.PeakRssBytes is { } peak) s += $" peak {peak >> 20}MiB";
        return s;
    }

    /// <summary>
    /// Console output. On a terminal, training steps redraw one progress-bar line in place; when output is
    /// redirected (a file, CI, a notebook) it prints a plain line every <paramref name="every"/> steps and
    /// never uses carriage returns. Evaluations always get their own line.
    /// </summary>
    /// <param name="writer">Destination (default: Console.Out).</param>
    /// <param name="every">Training steps between lines when not a terminal.</param>
    /// <param name="interactive">Force bar mode on or off (default: whether stdout is a terminal).</param>
    public static Action<LogRecord> Console(TextWriter? writer = null, int every = 50, bool? interactive = null)
    {
        writer ??= System.Console.Out;
        bool tty = interactive ?? !System.Console.IsOutputRedirected;
        bool barShown = false;
        return r =>
        {
            if (r.Phase == Phase.Train && tty)
            {
                writer.Write("\r" + Bar(r.Step, r.TotalSteps) + " " + Format(r) + "\u001b[K");
                barShown = true;
                if (r.Step == r.TotalSteps) { writer.WriteLine(); barShown = false; }
            }
            else if (r.Phase == Phase.Train)
            {
                if (r.Step % Math.Max(1, every) == 0 || r.Step == r.TotalSteps || r.Step == 1) writer.WriteLine(Format(r));
            }
            else
            {
                if (barShown) { writer.WriteLine(); barShown = false; }
                writer.WriteLine(Format(r));
            }
            writer.Flush();
        };
    }

    static string Bar(long step, long total, int width = 24)
    {
        int filled = total <= 0 ? width : (int)Math.Clamp(step * width / total, 0, width);
        return "[" + new string('#', filled) + new string('.', width - filled) + "]";
    }
}
