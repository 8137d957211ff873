using System.Text.RegularExpressions;
using Tsunagu.Firmware.Supervision;

namespace Tsunagu.UnitTests.Supervision;

/// <summary>
/// <see cref="Transitions.Table"/> is the whole truth: one row for every (state, outcome) pair that can occur, none for a
/// pair that cannot, and firmware/DESIGN.md shows exactly that table.
/// </summary>
public partial class TransitionsTests
{
    /// <summary>Set to 1 to rewrite the generated section of firmware/DESIGN.md instead of comparing it (<c>make firmware-design</c>).</summary>
    public const string RewriteVariable = "TSUNAGU_WRITE_DESIGN";

    private const string Begin = "<!-- generated from Transitions.Table by Transitions.Describe(); `make firmware-design` rewrites it -->\n";
    private const string End = "<!-- end of generated table -->\n";

    private static readonly Outcome[] ServerErrors = [Outcome.Refused, Outcome.SessionExpired, Outcome.LinkLost, Outcome.Retry];

    private static string Repository()
    {
        for (var dir = new DirectoryInfo(TestContext.CurrentContext.TestDirectory); dir is not null; dir = dir.Parent)
        {
            if (File.Exists(Path.Combine(dir.FullName, "firmware", "DESIGN.md")))
            {
                return dir.FullName;
            }
        }
        throw new InvalidOperationException($"no firmware/DESIGN.md above {TestContext.CurrentContext.TestDirectory}");
    }

    private static string Supervision => Path.Combine(Repository(), "firmware", "Tsunagu.Firmware", "Supervision");

    [GeneratedRegex(@"\bOutcome\.(\w+)")]
    private static partial Regex OutcomeMention();

    /// <summary>
    /// What a state's own code can give: every <c>Outcome.X</c> its file names, and the four server-error outcomes when it
    /// maps a server error (<see cref="DefaultStates"/>.FromServerError).
    /// </summary>
    private static HashSet<Outcome> Returned(StateId state)
    {
        var code = File.ReadAllText(Path.Combine(Supervision, $"{state}State.cs"));
        var outcomes = OutcomeMention().Matches(code).Select(m => Enum.Parse<Outcome>(m.Groups[1].Value)).ToHashSet();
        if (code.Contains("DefaultStates.FromServerError("))
        {
            outcomes.UnionWith(ServerErrors);
        }
        return outcomes;
    }

    [Test]
    public void Every_pair_that_can_occur_has_exactly_one_row_and_no_row_is_for_a_pair_that_cannot()
    {
        Assert.That(Transitions.Table.Select(t => (t.From, t.On)), Is.Unique);
        foreach (var state in Enum.GetValues<StateId>())
        {
            var expected = Returned(state);
            expected.UnionWith(Transitions.SupervisorOutcomes.Where(o => Transitions.SupervisorGives(state, o)));
            var rows = Transitions.Table.Where(t => t.From == state).Select(t => t.On);
            Assert.That(rows, Is.EquivalentTo(expected), $"rows from {state}: its code gives {string.Join(", ", Returned(state))}, the supervisor the rest");
        }
    }

    [Test]
    public void The_outcomes_the_scan_relies_on_are_the_ones_the_code_gives()
    {
        var servers = OutcomeMention().Matches(File.ReadAllText(Path.Combine(Supervision, "States.cs")))
            .Select(m => Enum.Parse<Outcome>(m.Groups[1].Value)).ToHashSet();
        Assert.That(servers, Is.EquivalentTo(ServerErrors), "what DefaultStates.FromServerError can give");
        var supervisor = OutcomeMention().Matches(File.ReadAllText(Path.Combine(Supervision, "Supervisor.cs")))
            .Select(m => Enum.Parse<Outcome>(m.Groups[1].Value)).ToHashSet();
        Assert.That(supervisor, Is.EquivalentTo(Transitions.SupervisorOutcomes), "what the supervisor's loop gives a state");
        Assert.That(DefaultStates.Create().Values.Select(s => s.GetType().Name), Is.EquivalentTo(Enum.GetValues<StateId>().Select(s => $"{s}State")),
            "one class per state, named after it (the scan reads <State>State.cs)");
        Assert.That(Returned(StateId.Ready), Is.SupersetOf(new[] { Outcome.CheckDue, Outcome.DataLost, Outcome.LinkLost }), "the scan sees returns");
    }

    [Test]
    public void A_state_that_tries_again_waits_and_one_that_moves_on_does_not()
    {
        foreach (var row in Transitions.Table)
        {
            var again = row.On is Outcome.Retry or Outcome.Fault or Outcome.LinkLost or Outcome.DataLost or Outcome.SessionExpired or Outcome.IspRefused;
            Assert.That(row.Wait != Wait.None, Is.EqualTo(again), $"{row.From} --{row.On}--> {row.To}: no failure may turn into a tight loop");
        }
    }

    [Test]
    public void A_pair_not_in_the_table_is_a_bug_that_names_itself()
    {
        var e = Assert.Throws<InvalidOperationException>(() => Transitions.Next(StateId.Boot, Outcome.UpdateAvailable));
        Assert.That(e!.Message, Does.Contain("Boot").And.Contain("UpdateAvailable"));
        Assert.Throws<InvalidOperationException>(() => Transitions.Find(StateId.FactoryReset, Outcome.ResetPressed));
    }

    [Test]
    public void Design_document_shows_the_table_as_it_is()
    {
        var path = Path.Combine(Repository(), "firmware", "DESIGN.md");
        var text = File.ReadAllText(path).ReplaceLineEndings("\n");
        var start = text.IndexOf(Begin, StringComparison.Ordinal);
        var end = text.IndexOf(End, StringComparison.Ordinal);
        Assert.That(start >= 0 && end > start, Is.True, $"firmware/DESIGN.md has the markers of the generated table ({Begin.Trim()} ... {End.Trim()})");
        var generated = text[..(start + Begin.Length)] + Transitions.Describe() + text[end..];
        if (Environment.GetEnvironmentVariable(RewriteVariable) == "1")
        {
            File.WriteAllText(path, generated);
            text = File.ReadAllText(path).ReplaceLineEndings("\n");
        }
        Assert.That(text, Is.EqualTo(generated), $"firmware/DESIGN.md differs from Transitions.Table: run `make firmware-design` (or this test with {RewriteVariable}=1)");
    }
}
