using System.Data;
using FluentMigrator;

namespace Tsunagu.Server.Data.Migrations;

/// <summary>
/// The audit log's filters at fleet scale: indexes on actor, action and time (each ending in the id, the order of the
/// log, so a filtered page is a range of one index), and <c>audit_units</c>, the units an entry names (as actor, as
/// its target, or in a target listing units), which the unit filter reads by key. Existing entries are indexed here.
/// </summary>
[Migration(15, "audit filter indexes and the units each entry names")]
public sealed class M0015_AuditIndexes : Migration
{
    public override void Up()
    {
        Create.Index("ix_audit_actor").OnTable("audit").OnColumn("actor").Ascending().OnColumn("id").Ascending();
        Create.Index("ix_audit_action").OnTable("audit").OnColumn("action").Ascending().OnColumn("id").Ascending();
        Create.Index("ix_audit_at").OnTable("audit").OnColumn("at").Ascending().OnColumn("id").Ascending();
        Create.Table("audit_units")
            .WithColumn("mac").AsString(17).NotNullable().PrimaryKey()
            .WithColumn("audit_id").AsInt64().NotNullable().PrimaryKey();
        Execute.WithConnection(Backfill);
    }

    private static void Backfill(IDbConnection connection, IDbTransaction transaction)
    {
        var named = new List<(string Mac, long Id)>();
        using (var read = connection.CreateCommand())
        {
            read.Transaction = transaction;
            read.CommandText = "SELECT id, actor, target FROM audit";
            using var reader = read.ExecuteReader();
            while (reader.Read())
            {
                var id = reader.GetInt64(0);
                var target = reader.IsDBNull(2) ? null : reader.GetString(2);
                named.AddRange(AuditUnitsAsMigrated.Named(reader.GetString(1), target).Select(mac => (mac, id)));
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
        foreach (var (m, i) in named)
        {
            mac.Value = m;
            auditId.Value = i;
            insert.ExecuteNonQuery();
        }
    }

    public override void Down()
    {
        Delete.Table("audit_units");
        Delete.Index("ix_audit_at").OnTable("audit");
        Delete.Index("ix_audit_action").OnTable("audit");
        Delete.Index("ix_audit_actor").OnTable("audit");
    }
}
