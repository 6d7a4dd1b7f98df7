using System.Diagnostics;
using Deq.Data;
using Deq.Implicit;
using Deq.Models;
using Deq.Solvers;
using TorchSharp;
using static TorchSharp.torch;

namespace Deq.Experiments;

/// <summary>Figure 2 sizes.</summary>
/// <param name="Model">The DEQ-Transformer LM (NToken is set from the corpus); its schedule gives the solver limits and tolerances.</param>
/// <param name="BatchSize">Columns of the batched training stream.</param>
/// <param name="Steps">Training steps (segments of Model.SeqLen tokens, memory carried across).</param>
/// <param name="LearningRate">Adam learning rate.</param>
/// <param name="Window">Training steps averaged into one point of the left panel.</param>
/// <param name="TraceEvaluations">f evaluations of each residual trace on the right.</param>
/// <param name="TraceBatch">Sequences in the fixed batch the residual traces are measured on.</param>
/// <param name="MaxTrainTokens">Training tokens used (the corpus is cut to this; 0 for all).</param>
/// <param name="Seed">Initialisation seed.</param>
public sealed record ConvergenceSettings(
    DeqTransformerConfig Model, int BatchSize, int Steps, double LearningRate, int Window, int TraceEvaluations, int TraceBatch,
    int MaxTrainTokens = 0, long Seed = 1111)
{
    // Figure 2 is about Broyden (the paper's solver), so it trains with Broyden both ways.
    static EquilibriumSchedule Solvers(int forward, int backward) =>
        EquilibriumSchedule.Broyden(forwardIterations: forward, backwardIterations: backward, forwardTol: 1e-4, backwardTol: 1e-5);

    /// <summary>The preset for a scale.</summary>
    public static ConvergenceSettings For(ExperimentScale scale) => scale switch
    {
        ExperimentScale.Smoke => new(DeqTransformerConfig.Tiny with { SeqLen = 8, MemLen = 8, Schedule = Solvers(8, 8) },
            BatchSize: 4, Steps: 4, LearningRate: 1e-3, Window: 2, TraceEvaluations: 8, TraceBatch: 2, MaxTrainTokens: 20_000),
        ExperimentScale.Small => new(DeqTransformerConfig.Tiny with { DModel = 32, DHead = 16, DInner = 64, SeqLen = 24, MemLen = 24, InitStd = 0.18, Schedule = Solvers(40, 40) },
            BatchSize: 8, Steps: 100, LearningRate: 2e-3, Window: 10, TraceEvaluations: 40, TraceBatch: 4, MaxTrainTokens: 200_000),
        // Large, estimated ~35-45 min on this 2-core CPU: ~9.4 GFLOP per step (d_model 64, 512 tokens, up to 40 + 40 Broyden
        // steps, which grow with training) ~0.7 s x 3000 steps, plus four 60-evaluation traces. Basis: the committed small run's ms/step on the idle machine (about 14 GFLOP/s achieved), scaled by the per-step work; today's small run was about 11x slower under a load average of 12-20, so a busy machine takes far longer.
        ExperimentScale.Large => new(DeqTransformerConfig.CpuSmall with { Schedule = Solvers(40, 40) },
            BatchSize: 16, Steps: 3000, LearningRate: 5e-4, Window: 100, TraceEvaluations: 60, TraceBatch: 8),
        _ => new(DeqTransformerConfig.Wt103Medium with { Cutoffs = null, DivVal = 1, Schedule = Solvers(30, 40) with { PretrainSteps = 16_000 } },
            BatchSize: 56, Steps: 300_000, LearningRate: 2.5e-4, Window: 5000, TraceEvaluations: 60, TraceBatch: 8),
    };
}

/// <summary>What the Figure 2 experiment returns.</summary>
/// <param name="Settings">The settings run.</param>
/// <param name="Data">"ptb" or a sentence saying synthetic data stood in.</param>
/// <param name="ForwardSteps">Left panel: mean Broyden steps per forward solve against training step.</param>
/// <param name="BackwardSteps">Left panel: mean Broyden steps per backward (adjoint) solve against training step.</param>
/// <param name="Residuals">Right panel: ||f(z) - z||_2 against f evaluations, Broyden and plain iteration, at the start and the end of training.</param>
/// <param name="FinalResiduals">The last residual of each trace, by trace name.</param>
/// <param name="TrainLoss">Training loss (nats) against step, window means.</param>
/// <param name="Run">Where it ran.</param>
/// <param name="Wall">Wall time.</param>
public sealed record ConvergenceResult(
    ConvergenceSettings Settings, string Data, Curve ForwardSteps, Curve BackwardSteps, IReadOnlyList<Curve> Residuals,
    IReadOnlyDictionary<string, double> FinalResiduals, Curve TrainLoss, RunInfo Run, TimeSpan Wall)
{
    /// <summary>The paper's weight-tied Transformer depth: its residual after this many plain iterations is the paper-depth baseline.</summary>
    public const int PaperDepth = 18;

    /// <summary>The trace named <paramref name="prefix"/> at <paramref name="when"/> ("start" or "after N steps").</summary>
    Curve Trace(string prefix, string when) => Residuals.First(c => c.Name.StartsWith(prefix, StringComparison.Ordinal) && c.Name.EndsWith(when, StringComparison.Ordinal));
    string After => $"after {Settings.Steps} steps";

    /// <summary>C5 on the trained model's traces and the left panel.</summary>
    public ClaimVerdict Verdict => Claims.AtScale(Run.Scale, Claims.C5(Trace("Broyden", After).Y, Trace("forward iteration", After).Y, ForwardSteps.X, ForwardSteps.Y,
        Settings.Window, Settings.Model.EffectiveSchedule.PretrainSteps, Settings.Steps));

    /// <summary>The baselines beside the trained DEQ: plain iteration at the paper's depth (18 layers) and at the residual Broyden reaches.</summary>
    public ResultTable Table
    {
        get
        {
            var rows = new List<string[]>();
            foreach (var when in new[] { "start", After })
            {
                var broyden = Trace("Broyden", when).Y;
                var plain = Trace("forward iteration", when).Y;
                string At(double[] y, int k) => y.Length >= k ? $"{y[k - 1]:0.00E+0}" : "-";
                var reach = Claims.EvaluationsToCommonResidual(broyden, plain);
                string E(int k) => k == int.MaxValue ? "never" : $"{k}";
                rows.Add([when, At(broyden, PaperDepth), At(plain, PaperDepth), reach is { } r ? $"{r.Target:0.00E+0}" : "-",
                    reach is { } r1 ? E(r1.Broyden) : "-", reach is { } r2 ? E(r2.Plain) : "-"]);
            }
            var notes = new List<string>
            {
                $"Data: {Data}. Model: DEQ-Transformer d_model {Settings.Model.DModel}, trained {Settings.Steps} steps with {Settings.Model.EffectiveSchedule.Describe()}.",
                $"Residual ||f(z) - z||_2 over the fixed trace batch; plain iteration of the DEQ's f is the weight-tied stack (one layer per f evaluation). " +
                $"Paper depth: the residual after {PaperDepth} evaluations (the paper's 18-layer Transformer); matched: f evaluations each needs to reach the lowest residual both reach.",
                "Paper: the plotted values are not published; its text: Broyden \"finds the equilibrium in a stable and efficient manner\" and its iterations \"gradually grow with epochs\".",
            };
            return new ResultTable("Figure 2: Broyden against plain iteration (the weight-tied stack), at the paper's depth and at matched residual",
                ["model state", $"Broyden residual at {PaperDepth} f evals", $"plain iteration at {PaperDepth} layers", "lowest common residual", "Broyden: f evals to it", "plain: layers to it"],
                rows, notes, [Verdict]);
        }
    }

    /// <summary>The table as Markdown with its footer and verdict.</summary>
    public string Markdown => Table.ToMarkdown(Run, Wall);

    /// <summary>Points and verdict for paper-figures/&lt;scale&gt;/figure2-convergence.json.</summary>
    public ExperimentReport Report => ExperimentReport.Of(ConvergenceExperiment.FileStem, Table, Run, Wall,
        Residuals.Select(c => new ResultRow(c.Name, null, "final residual ||f(z) - z||_2", c.Y.Length > 0 ? c.Y[^1] : null, Steps: Settings.Steps,
            Extra: c.Y.Length >= PaperDepth ? new Dictionary<string, double> { ["residualAtPaperDepth"] = c.Y[PaperDepth - 1] } : null))
        .Append(new ResultRow("DEQ-Transformer: forward Broyden steps per solve", null, "mean of the last window", ForwardSteps.Y.Length > 0 ? ForwardSteps.Y[^1] : null,
            Steps: Settings.Steps, WallSeconds: Wall.TotalSeconds,
            Extra: ForwardSteps.X.Select((x, i) => (x, y: ForwardSteps.Y[i])).ToDictionary(p => $"step{p.x:0}", p => p.y)))
        .ToList());
}

/// <summary>
/// Figure 2: trains a DEQ-Transformer LM (PTB, or synthetic data when PTB is absent) recording the Broyden steps of
/// every forward and backward solve, and traces the residual against f evaluations for Broyden and for plain forward
/// iteration of the same layer (what a deep weight-tied Transformer computes) before and after training.
/// </summary>
public static class ConvergenceExperiment
{
    /// <summary>File stem of the residual panel (figure2-convergence.html / .png).</summary>
    public const string FileStem = "figure2-convergence";
    /// <summary>File stem of the solver-steps panel (an extra: figure2-steps.html / .png).</summary>
    public const string StepsFileStem = "figure2-steps";

    /// <summary>Runs the preset of <paramref name="scale"/>.</summary>
    public static ConvergenceResult Run(ExperimentScale scale) => Run(ConvergenceSettings.For(scale), scale);

    /// <summary>Runs <paramref name="settings"/> on <see cref="ExperimentDevice.Default"/>.</summary>
    public static ConvergenceResult Run(ConvergenceSettings settings, ExperimentScale scale)
    {
        var clock = Stopwatch.StartNew();
        var device = ExperimentDevice.Default;
        var (train, trace, vocab, dataNote) = LoadTokens(settings);
        using var _t = train; using var _v = trace;
        var config = settings.Model with { NToken = vocab };
        torch.manual_seed(settings.Seed);
        using var model = new DeqTransformerLM(config);
        model.to(device);
        var traceTokens = trace.to(device);

        var residuals = new List<Curve>();
        residuals.AddRange(Traces(model, traceTokens, settings.TraceEvaluations, "start"));

        using var optimizer = optim.Adam(model.parameters(), lr: settings.LearningRate);
        var batched = Batching.Batchify(train, settings.BatchSize, device);
        int segments = Batching.SegmentCount(batched, config.SeqLen);
        var schedule = config.EffectiveSchedule;
        var (fx, fy, by, lx, ly) = (new List<double>(), new List<double>(), new List<double>(), new List<double>(), new List<double>());
        double fSum = 0, bSum = 0, lSum = 0; int n = 0;
        TransformerMemory? memory = null;
        for (int step = 0; step < settings.Steps; step++)
        {
            using (var scope = torch.NewDisposeScope())
            {
                int seg = step % segments;
                if (seg == 0) memory = null;
                var (input, target) = Batching.Segment(batched, seg, config.SeqLen);
                model.train();
                optimizer.zero_grad();
                BackwardReport? backward = null;
                var output = model.Forward(input.t(), memory, schedule.OptionsAt(step) with { OnBackward = r => backward = r });
                var loss = model.Loss(output.Hidden, target.t());
                Equilibrium.Backward(loss);
                nn.utils.clip_grad_norm_(model.parameters(), 0.25);
                optimizer.step();
                var previous = memory;
                memory = new TransformerMemory(output.Memory.Z.MoveToOuterDisposeScope(), output.Memory.Injection.MoveToOuterDisposeScope());
                previous?.Z.Dispose(); previous?.Injection.Dispose();
                fSum += output.Equilibrium.Forward.Steps;
                bSum += backward?.Result.Steps ?? 0;
                lSum += loss.item<float>();
                n++;
            }
            if (n == settings.Window || step == settings.Steps - 1)
            {
                fx.Add(step + 1); fy.Add(fSum / n); by.Add(bSum / n); lx.Add(step + 1); ly.Add(lSum / n);
                Progress.Report($"figure 2: step {step + 1}/{settings.Steps}, loss {lSum / n:F3}, Broyden steps forward {fSum / n:F1} / backward {bSum / n:F1}");
                (fSum, bSum, lSum, n) = (0, 0, 0, 0);
            }
        }
        residuals.AddRange(Traces(model, traceTokens, settings.TraceEvaluations, $"after {settings.Steps} steps"));
        var finals = residuals.ToDictionary(c => c.Name, c => c.Y.Length == 0 ? double.NaN : c.Y[^1]);
        return new ConvergenceResult(settings, dataNote,
            new Curve("forward (Broyden steps per solve)", fx.ToArray(), fy.ToArray()),
            new Curve("backward (Broyden steps per solve)", fx.ToArray(), by.ToArray()),
            residuals, finals, new Curve("training loss", lx.ToArray(), ly.ToArray()),
            RunInfo.Capture(scale, device), clock.Elapsed);
    }

    // Training tokens, a fixed trace batch [B, T], the vocabulary size, and where they came from.
    static (Tensor Train, Tensor Trace, int Vocab, string Note) LoadTokens(ConvergenceSettings s)
    {
        int b = s.TraceBatch, t = s.Model.SeqLen;
        if (CorpusLocator.Find("ptb") is { } dir)
        {
            using var corpus = Corpus.Load(dir);
            var train = s.MaxTrainTokens > 0 && corpus.Train.shape[0] > s.MaxTrainTokens ? corpus.Train.narrow(0, 0, s.MaxTrainTokens).clone() : corpus.Train.clone();
            var trace = corpus.Valid.narrow(0, 0, (long)b * t).reshape(b, t).clone();
            return (train, trace, corpus.Vocabulary.Count, "ptb");
        }
        // Synthetic stand-in: a noisy deterministic successor rule over 200 symbols (learnable, not language).
        const int vocab = 200;
        using var g = new Generator((ulong)s.Seed, torch.CPU);
        long count = Math.Max(s.MaxTrainTokens, (long)s.BatchSize * t * 4) + (long)b * t;
        var noise = torch.randint(0, vocab, [count], dtype: ScalarType.Int64, generator: g);
        var keep = torch.rand([count], generator: g).lt(0.8);
        var tokens = new long[count];
        var nz = noise.data<long>().ToArray(); var kp = keep.data<bool>().ToArray();
        for (long i = 1; i < count; i++) tokens[i] = kp[i] ? (tokens[i - 1] * 7 + 3) % vocab : nz[i];
        var all = torch.tensor(tokens);
        long trainCount = count - (long)b * t;
        return (all.narrow(0, 0, trainCount).clone(), all.narrow(0, trainCount, (long)b * t).reshape(b, t).clone(), vocab,
            "PTB not found; synthetic data; not comparable. " + CorpusLocator.Missing("ptb"));
    }

    // ||f(z) - z||_2 over the whole batch after each f evaluation, for Broyden and for plain iteration (the weight-tied stack).
    static IEnumerable<Curve> Traces(DeqTransformerLM model, Tensor tokens, int evaluations, string when)
    {
        using var _ = torch.no_grad();
        using var scope = torch.NewDisposeScope();
        model.eval();
        var cell = model.Bind(tokens, null);
        var options = new SolverOptions(MaxIter: evaluations, Tol: 1e-12, DivergenceFactor: 1e12, MaxGrowth: 1e12);
        foreach (var (name, solver) in new[] { ("Broyden (DEQ)", Broyden.Create(options)), ("forward iteration (weight-tied)", ForwardIteration.Create(options)) })
        {
            var ys = new List<double>();
            solver.Observed(step => ys.Add(Math.Sqrt(step.AbsResidual.Sum(r => r * r))))(cell.F, cell.Z0);
            if (ys.Count > evaluations) ys.RemoveRange(evaluations, ys.Count - evaluations);
            yield return new Curve($"{name}, {when}", Enumerable.Range(1, ys.Count).Select(i => (double)i).ToArray(), ys.ToArray());
        }
    }
}
