using FluentMigrator;

namespace Tsunagu.Server.Data.Migrations;

/// <summary>
/// The static WAN account's gateway and name servers (comma-separated IPv4 addresses), and the revision of the settings
/// a unit fetches: an edit of any WAN field raises it, and the version check reports it so the unit refetches.
/// </summary>
[Migration(9, "unit WAN settings: gateway, name servers, settings revision")]
public sealed class M0009_WanSettings : Migration
{
    public override void Up()
    {
        Alter.Table("units")
            .AddColumn("isp_gateway").AsString().Nullable()
            .AddColumn("isp_dns").AsString().Nullable()
            .AddColumn("settings_revision").AsInt64().NotNullable().WithDefaultValue(1);
    }

    public override void Down()
    {
        Delete.Column("settings_revision").FromTable("units");
        Delete.Column("isp_dns").FromTable("units");
        Delete.Column("isp_gateway").FromTable("units");
    }
}
