using System.Text.Json.Serialization;

namespace Deq.Experiments;

/// <summary>What a run says about one of the paper's claims.</summary>
[JsonConverter(typeof(JsonStringEnumConverter<ClaimOutcome>))]
public enum ClaimOutcome
{
    /// <summary>The figures meet the claim's criterion.</summary>
    Holds,
    /// <summary>The figures contradict it.</summary>
    DoesNotHold,
    /// <summary>The run cannot decide it (too small, too short, or a figure is missing).</summary>
    NotTested,
}

/// <summary>
/// The verdict on one claim: its id (C1..C6), the outcome and the figure that decides it, e.g.
/// "C1: DEQ 151.2 against weight-tied 149.8 (+0.9%, within 3%): holds".
/// </summary>
/// <param name="Claim">"C1".."C6".</param>
/// <param name="Outcome">Holds, does not hold, or not tested.</param>
/// <param name="Evidence">The deciding figures in words (and, when not tested, why).</param>
public sealed record ClaimVerdict(string Claim, ClaimOutcome Outcome, string Evidence)
{
    /// <summary>"holds", "does not hold" or "not tested at this scale".</summary>
    public string OutcomeText => Outcome switch
    {
        ClaimOutcome.Holds => "holds",
        ClaimOutcome.DoesNotHold => "does not hold",
        _ => "not tested at this scale",
    };

    /// <summary>The line printed under a table: "C1: evidence: holds".</summary>
    public string Line => $"{Claim}: {Evidence}: {OutcomeText}";

    /// <inheritdoc />
    public override string ToString() => Line;
}
