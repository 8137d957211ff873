using FluentMigrator;

namespace Tsunagu.Server.Data.Migrations;

/// <summary>
/// What replicas share beyond the unit tables: authentication attempts counted per subject (a MAC or a source
/// address) and clock minute, and leases that let exactly one replica do the work that must run once. Used on
/// PostgreSQL; a single SQLite process keeps both in memory.
/// </summary>
[Migration(12, "shared authentication counters and leases")]
public sealed class M0012_SharedCounters : Migration
{
    public override void Up()
    {
        Create.Table("auth_attempts")
            .WithColumn("subject").AsString(80).NotNullable().PrimaryKey()
            .WithColumn("minute").AsInt64().NotNullable().PrimaryKey()
            .WithColumn("count").AsInt64().NotNullable();
        Create.Index("ix_auth_attempts_minute").OnTable("auth_attempts").OnColumn("minute").Ascending();
        Create.Table("leases")
            .WithColumn("name").AsString(64).NotNullable().PrimaryKey()
            .WithColumn("holder").AsString(128).NotNullable()
            .WithColumn("expires_at_ms").AsInt64().NotNullable(); // the database's clock, Unix milliseconds
    }

    public override void Down()
    {
        Delete.Table("leases");
        Delete.Table("auth_attempts");
    }
}
