using System.Data;
using FluentMigrator;

namespace Tsunagu.Server.Data.Migrations;

/// <summary>
/// <c>audit_units</c> again for entries whose target lists units with spaces after the commas ("a, b"): the index of
/// <see cref="M0015_AuditIndexes"/> read only the first unit of such a list. The missing pairs are added; nothing is removed.
/// </summary>
[Migration(18, "audit_units for targets listing units with spaces")]
public sealed class M0018_AuditUnitsTrimmed : Migration
{
    public override void Up() => Execute.WithConnection(Backfill);

    private static void Backfill(IDbConnection connection, IDbTransaction transaction)
    {
        var named = new List<(string Mac, long Id)>();
        var present = new HashSet<(string, long)>();
        using (var read = connection.CreateCommand())
        {
            read.Transaction = transaction;
            read.CommandText = "SELECT a.id, a.actor, a.target, u.mac FROM audit a LEFT JOIN audit_units u ON u.audit_id = a.id WHERE a.target LIKE '%,%'";
            using var reader = read.ExecuteReader();
            var seen = new HashSet<long>();
            while (reader.Read())
            {
                var id = reader.GetInt64(0);
                if (!reader.IsDBNull(3)) { present.Add((reader.GetString(3), id)); }
                if (seen.Add(id))
                {
                    named.AddRange(AuditUnitsAsMigrated.Named(reader.GetString(1), reader.GetString(2)).Select(mac => (mac, id)));
                }
            }
        }
        using var insert = connection.CreateCommand();
        insert.Transaction = transaction;
        insert.CommandText = "INSERT INTO audit_units (mac, audit_id) VALUES (@mac, @id)";
        var mac = insert.CreateParameter();
        mac.ParameterName = "@mac";
        var auditId = insert.CreateParameter();
        auditId.ParameterName = "@id";
        insert.Parameters.Add(mac);
        insert.Parameters.Add(auditId);
        foreach (var (m, i) in named.Where(n => !present.Contains(n)))
        {
            mac.Value = m;
            auditId.Value = i;
            insert.ExecuteNonQuery();
        }
    }

    public override void Down()
    {
        // the pairs added here are right for the entries they name; nothing to undo
    }
}
