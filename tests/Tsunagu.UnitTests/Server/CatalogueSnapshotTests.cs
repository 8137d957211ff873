using Tsunagu.Server.Data;

namespace Tsunagu.UnitTests.Server;

/// <summary>
/// Which update program a unit is offered: the way forward from its pattern by default; a way back (to a pattern
/// defined before its own) only when it is the unit's target, so a catalogue holding both never sends units round.
/// </summary>
public class CatalogueSnapshotTests
{
    private static PatternRow Pattern(string id, string? created) =>
        new() { Id = id, Name = id, HardwareVersion = "hw", OsVersion = "os", Status = PatternStatus.Verified, CreatedAt = created };

    private static UpdateProgramRow Program(string id, string from, string to, long priority = 1) =>
        new() { Id = id, FromPattern = from, ToPattern = to, Importance = 5, Priority = priority, ArtifactSha256 = new string('a', 64) };

    private static CatalogueSnapshot Catalogue(IEnumerable<PatternRow> patterns, params UpdateProgramRow[] programs) => new("s", patterns, programs, []);

    [Test]
    public void Without_a_target_only_the_way_forward_is_offered()
    {
        var catalogue = Catalogue([Pattern("p2", "2026-01-01T00:00:00.0000000Z"), Pattern("p3", "2026-02-01T00:00:00.0000000Z")],
            Program("p2-to-p3", "p2", "p3"), Program("p3-to-p2", "p3", "p2", priority: 9));
        Assert.Multiple(() =>
        {
            Assert.That(catalogue.FindUpdateProgram("p2")?.Id, Is.EqualTo("p2-to-p3"));
            Assert.That(catalogue.FindUpdateProgram("p3"), Is.Null, "the way back is not the default path, whatever its priority");
            Assert.That(catalogue.FindUpdateProgram("p3", "p2")?.Id, Is.EqualTo("p3-to-p2"), "a unit targeted at p2 takes it");
            Assert.That(catalogue.FindWayBack("p3")?.Id, Is.EqualTo("p3-to-p2"));
            Assert.That(catalogue.FindWayBack("p2"), Is.Null);
        });
    }

    [Test]
    public void Patterns_whose_creation_is_unknown_or_the_same_keep_every_program_on_the_default_path()
    {
        var same = Catalogue([Pattern("p1", "2026-01-01T00:00:00.0000000Z"), Pattern("p2", "2026-01-01T00:00:00.0000000Z")], Program("p2-to-p1", "p2", "p1"));
        var unknown = Catalogue([Pattern("p1", null), Pattern("p2", "2026-01-01T00:00:00.0000000Z")], Program("p2-to-p1", "p2", "p1"));
        Assert.That((same.FindUpdateProgram("p2")?.Id, unknown.FindUpdateProgram("p2")?.Id), Is.EqualTo(("p2-to-p1", "p2-to-p1")));
    }

    [Test]
    public void A_program_to_an_earlier_pattern_without_a_way_the_other_way_is_a_way_forward()
    {
        // an intermediate step catalogued after its destination: no cycle, so units without a target take it
        var catalogue = Catalogue([Pattern("p3", "2026-01-01T00:00:00.0000000Z"), Pattern("p2b", "2026-02-01T00:00:00.0000000Z")],
            Program("p2b-to-p3", "p2b", "p3"));
        Assert.That((catalogue.FindUpdateProgram("p2b")?.Id, catalogue.FindWayBack("p2b")), Is.EqualTo(("p2b-to-p3", (UpdateProgramRow?)null)));
    }
}
