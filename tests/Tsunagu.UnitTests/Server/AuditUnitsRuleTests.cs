using CsCheck;
using Tsunagu.Server.Data;
using Tsunagu.Server.Data.Migrations;

namespace Tsunagu.UnitTests.Server;

/// <summary>
/// The units an audit entry names: the live rule (what the store writes to <c>audit_units</c> with each entry) and the
/// rule the migrations backfilled existing entries with must agree, or entries from before and after an upgrade would
/// be found by different rules. A change of the live rule fails here until a migration backfills the old entries.
/// </summary>
public class AuditUnitsRuleTests
{
    private static readonly string[] Pieces =
    [
        "02:54:53:00:0a:01", "02:54:53:00:0a:02", "02:54:53:00:0A:01", "0254530a0a01", "pattern-2", "alice", "x", "",
        " ", "\t", ",", ", ", " ,", "\n", "02:54:53:00:0a:0", "02-54-53-00-0a-01", "ff:ff:ff:ff:ff:ff", "\u00a0",
    ];

    [Test]
    public void The_live_rule_and_the_migrated_rule_name_the_same_units()
    {
        // up to eight pieces, chosen by a seed CsCheck shrinks
        var text = Gen.Int[0, int.MaxValue].Select(seed =>
        {
            var random = new Random(seed);
            return string.Concat(Enumerable.Range(0, random.Next(9)).Select(_ => Pieces[random.Next(Pieces.Length)]));
        });
        var target = Gen.Select(text, Gen.Bool, (t, none) => none ? null : t);
        Gen.Select(text, target).Sample((actor, target) =>
        {
            var live = AuditUnits.Named(actor, target);
            var migrated = AuditUnitsAsMigrated.Named(actor, target);
            return live.SequenceEqual(migrated, StringComparer.Ordinal);
        }, iter: 20_000);
    }

    [Test]
    public void The_migrated_rule_reads_trimmed_lower_case_macs_each_once()
    {
        Assert.That(AuditUnitsAsMigrated.Named("02:54:53:00:0a:01", " 02:54:53:00:0a:02 ,02:54:53:00:0a:01, 02:54:53:00:0A:03, pattern-2"),
            Is.EqualTo(new[] { "02:54:53:00:0a:01", "02:54:53:00:0a:02" }));
        Assert.That(AuditUnitsAsMigrated.Named("alice", null), Is.Empty);
    }
}
