using System.Reflection;
using System.Text.RegularExpressions;
using Tsunagu.Firmware.Supervision;
using Tsunagu.Hal;

namespace Tsunagu.UnitTests.Supervision;

/// <summary>
/// firmware/DESIGN.md describes the code as it is: its tables of states, outcomes, options and HAL capabilities name
/// exactly what the code has, and every source file it names exists, as does every one docs/services.md (the router
/// services, moved out of it) names. (The transition table itself is generated and compared in <see cref="TransitionsTests"/>.)
/// </summary>
public partial class DesignDocumentTests
{
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

    private static string Document(string path = "firmware/DESIGN.md") => File.ReadAllText(Path.Combine(Repository(), path)).ReplaceLineEndings("\n");

    /// <summary>The text of the section whose heading starts with <paramref name="heading"/>, up to the next heading of its level.</summary>
    private static string Section(string heading)
    {
        var text = Document();
        var start = text.IndexOf($"\n{heading}", StringComparison.Ordinal);
        Assert.That(start, Is.GreaterThanOrEqualTo(0), $"firmware/DESIGN.md has a section '{heading}'");
        var end = text.IndexOf("\n## ", start + 1, StringComparison.Ordinal);
        return end < 0 ? text[start..] : text[start..end];
    }

    [GeneratedRegex(@"^\| `([^`]+)`", RegexOptions.Multiline)]
    private static partial Regex FirstCell();

    /// <summary>The name in the first cell of each table row of <paramref name="section"/>, in order.</summary>
    private static List<string> FirstCells(string section) => FirstCell().Matches(section).Select(m => m.Groups[1].Value).ToList();

    [Test]
    public void The_states_section_describes_every_state_in_the_order_of_StateId()
    {
        Assert.That(FirstCells(Section("## 1. States")), Is.EqualTo(Enum.GetNames<StateId>()));
    }

    [Test]
    public void The_outcomes_section_describes_every_outcome_in_the_order_of_Outcome()
    {
        Assert.That(FirstCells(Section("## 2. Outcomes")), Is.EqualTo(Enum.GetNames<Outcome>()));
    }

    [Test]
    public void The_options_section_names_every_supervisor_option()
    {
        var section = Section("## 9. Options");
        var options = typeof(SupervisorOptions).GetProperties(BindingFlags.Public | BindingFlags.Instance)
            .Where(p => p.CanWrite && p.Name != "EqualityContract").Select(p => p.Name).ToList();
        Assert.That(options, Is.Not.Empty);
        Assert.That(options.Where(o => !section.Contains($"`{o}`", StringComparison.Ordinal)), Is.Empty, "options the table does not name");
    }

    [Test]
    public void The_hal_section_names_every_capability_of_a_unit()
    {
        var section = Section("## 10. HAL capabilities");
        var capabilities = typeof(UnitHardware).GetProperties(BindingFlags.Public | BindingFlags.Instance)
            .Where(p => p.Name != "EqualityContract").Select(p => p.PropertyType.Name).Append(nameof(ISystemClock)).ToList();
        Assert.That(capabilities, Has.Count.GreaterThan(10));
        Assert.That(capabilities.Where(c => !FirstCells(section).Contains(c)), Is.Empty, "capabilities the table does not name");
    }

    [GeneratedRegex(@"`([A-Za-z0-9_./-]+\.(?:cs|md|sh|json|csproj))`")]
    private static partial Regex FileMention();

    [TestCase("firmware/DESIGN.md", 10)]
    [TestCase("docs/services.md", 2)]
    public void Every_source_file_the_document_names_exists(string document, int fewest)
    {
        var root = Repository();
        // a path is written from the repository, from the firmware project or its supervision folder, or from the HAL project;
        // a bare file name may live in any component
        string[] bases = ["", "firmware/Tsunagu.Firmware", "firmware/Tsunagu.Firmware/Supervision", "hal/Tsunagu.Hal"];
        var sources = new[] { "firmware", "hal", "protocol", "server", "tools" }
            .SelectMany(d => Directory.EnumerateFiles(Path.Combine(root, d), "*", SearchOption.AllDirectories))
            .Where(f => !f.Contains($"{Path.DirectorySeparatorChar}bin{Path.DirectorySeparatorChar}") && !f.Contains($"{Path.DirectorySeparatorChar}obj{Path.DirectorySeparatorChar}"))
            .Select(Path.GetFileName).ToHashSet();
        var named = FileMention().Matches(Document(document)).Select(m => m.Groups[1].Value)
            .Where(f => f != "identity.json" && f != "board.json") // data files of a unit and a board, not sources
            .Distinct().ToList();
        Assert.That(named, Has.Count.GreaterThan(fewest), "the scan finds the document's file names");
        var missing = named.Where(f => f.Contains('/')
            ? !bases.Any(b => File.Exists(Path.Combine(root, b, f)))
            : !sources.Contains(f)).ToList();
        Assert.That(missing, Is.Empty, $"files {document} names that do not exist");
    }
}
