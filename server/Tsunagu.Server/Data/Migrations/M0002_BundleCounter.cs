using FluentMigrator;

namespace Tsunagu.Server.Data.Migrations;

/// <summary>Each unit's highest installed bundle (version, id), so its no-rollback counter survives a wiped unit.</summary>
[Migration(2, "bundle counter per unit")]
public sealed class M0002_BundleCounter : Migration
{
    public override void Up()
    {
        Alter.Table("units")
            .AddColumn("last_bundle_version").AsInt64().Nullable()
            .AddColumn("last_bundle_id").AsString().Nullable();
    }

    public override void Down()
    {
        Delete.Column("last_bundle_version").FromTable("units");
        Delete.Column("last_bundle_id").FromTable("units");
    }
}
