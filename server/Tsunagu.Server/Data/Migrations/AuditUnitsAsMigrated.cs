namespace Tsunagu.Server.Data.Migrations;

/// <summary>
/// The rule by which <see cref="M0015_AuditIndexes"/> and <see cref="M0018_AuditUnitsTrimmed"/> filled
/// <c>audit_units</c> for existing entries, fixed as those migrations ran it. A migration never calls the live rule
/// (<see cref="AuditUnits.Named"/>): changing that would silently change what an old migration does on a database
/// that has not run it yet. The two agree (a test holds them to it); a change of the live rule needs a new migration
/// that backfills the entries written before it, and a new copy here for that migration.
/// </summary>
public static class AuditUnitsAsMigrated
{
    /// <summary>The actor when it is a MAC as the store writes it, then each comma-separated, trimmed part of the target that is one; each once.</summary>
    public static IReadOnlyList<string> Named(string actor, string? target)
    {
        var named = new List<string>();
        if (IsStoredMac(actor)) { named.Add(actor); }
        if (target is not null)
        {
            foreach (var part in target.Split(','))
            {
                var mac = part.Trim();
                if (IsStoredMac(mac) && !named.Contains(mac, StringComparer.Ordinal)) { named.Add(mac); }
            }
        }
        return named;
    }

    /// <summary>Six pairs of lower-case hex digits joined by colons.</summary>
    private static bool IsStoredMac(string value)
    {
        if (value.Length != 17) { return false; }
        for (var i = 0; i < 17; i++)
        {
            var c = value[i];
            var ok = i % 3 == 2 ? c == ':' : c is >= '0' and <= '9' or >= 'a' and <= 'f';
            if (!ok) { return false; }
        }
        return true;
    }
}
