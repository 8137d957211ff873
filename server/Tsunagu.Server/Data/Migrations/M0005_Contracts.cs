using FluentMigrator;

namespace Tsunagu.Server.Data.Migrations;

/// <summary>
/// Contracts: which fields of a unit's service configuration the subscriber may change (a JSON list of field names);
/// each subscriber is on one contract (none: the default contract). The default contract is created with what the
/// subscriber portal edited before contracts existed, so nothing changes for existing subscribers.
/// </summary>
[Migration(5, "contracts: the subscriber's allow-list of service configuration fields")]
public sealed class M0005_Contracts : Migration
{
    public override void Up()
    {
        Create.Table("contracts")
            .WithColumn("name").AsString(64).PrimaryKey()
            .WithColumn("subscriber_fields").AsString().NotNullable();
        Insert.IntoTable("contracts").Row(new
        {
            name = "standard",
            subscriber_fields = """["firewall.portForwards","dhcp.lanAddress","dhcp.prefixLength","dhcp.rangeStart","dhcp.rangeEnd","contentFilter.enabled","contentFilter.blockedDomains","vpn.peers"]""",
        });
        Alter.Table("subscribers").AddColumn("contract").AsString(64).Nullable();
    }

    public override void Down()
    {
        Delete.Column("contract").FromTable("subscribers");
        Delete.Table("contracts");
    }
}
