namespace Deq.Training;

/// <summary>Learning-rate schedules as pure functions of the step, so a resumed run needs no scheduler state.</summary>
public static class LearningRate
{
    /// <summary>
    /// Linear warmup from Peak/Warmup to Peak over the first <paramref name="warmup"/> steps, then cosine
    /// decay from Peak to <paramref name="min"/> at step <paramref name="total"/> (held there afterwards).
    /// </summary>
    /// <param name="step">0-based step about to be taken.</param>
    /// <param name="peak">Rate at the end of warmup.</param>
    /// <param name="warmup">Warmup steps (0: none).</param>
    /// <param name="total">Steps of the whole run.</param>
    /// <param name="min">Final rate.</param>
    public static double WarmupCosine(long step, double peak, long warmup, long total, double min = 0)
    {
        if (step < warmup) return peak * (step + 1) / warmup;
        long decay = Math.Max(1, total - warmup);
        double progress = Math.Clamp((double)(step - warmup) / decay, 0, 1);
        return min + 0.5 * (peak - min) * (1 + Math.Cos(Math.PI * progress));
    }
}
