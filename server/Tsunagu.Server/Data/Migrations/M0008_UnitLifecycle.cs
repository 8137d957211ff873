using FluentMigrator;

namespace Tsunagu.Server.Data.Migrations;

/// <summary>
/// The device management table as a living record: a revision per unit row (optimistic concurrency), the history of
/// its revisions, decommissioning (the row stays for audit) and the replacement that took over a unit, and the sealed
/// ISP password. Existing plain-text passwords are sealed by the server at start-up with the operator's secrets key
/// (<see cref="Units.Lifecycle.SecretBox"/>), which a migration cannot read; until then the plain column holds them.
/// </summary>
[Migration(8, "unit lifecycle: revisions, decommissioning, sealed secrets")]
public sealed class M0008_UnitLifecycle : Migration
{
    public override void Up()
    {
        Alter.Table("units")
            .AddColumn("revision").AsInt64().NotNullable().WithDefaultValue(1)
            .AddColumn("decommissioned_at").AsString().Nullable()
            .AddColumn("replaced_by").AsString(17).Nullable()
            .AddColumn("isp_password_sealed").AsString().Nullable();
        Create.Table("unit_revisions")
            .WithColumn("id").AsInt64().PrimaryKey().Identity()
            .WithColumn("mac").AsString(17).NotNullable()
            .WithColumn("revision").AsInt64().NotNullable()
            .WithColumn("at").AsString().NotNullable()
            .WithColumn("actor").AsString().NotNullable()
            .WithColumn("action").AsString().NotNullable()
            .WithColumn("changes").AsString().NotNullable();
        Create.Index("ix_unit_revisions_mac").OnTable("unit_revisions").OnColumn("mac").Ascending().OnColumn("revision").Ascending();
    }

    public override void Down()
    {
        Delete.Table("unit_revisions");
        Delete.Column("isp_password_sealed").FromTable("units");
        Delete.Column("replaced_by").FromTable("units");
        Delete.Column("decommissioned_at").FromTable("units");
        Delete.Column("revision").FromTable("units");
    }
}
