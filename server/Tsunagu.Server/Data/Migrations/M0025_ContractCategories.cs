using FluentMigrator;

namespace Tsunagu.Server.Data.Migrations;

/// <summary>
/// The default contract lets its subscribers choose the content filter's categories (<c>contentFilter.categories</c>),
/// as the portal now edits them: only while it is still the list M0005 created, so a contract the operator changed
/// stays as the operator set it.
/// </summary>
[Migration(25, "contracts: the default contract lets the subscriber choose content-filter categories")]
public sealed class M0025_ContractCategories : Migration
{
    private const string Before =
        """["firewall.portForwards","dhcp.lanAddress","dhcp.prefixLength","dhcp.rangeStart","dhcp.rangeEnd","contentFilter.enabled","contentFilter.blockedDomains","vpn.peers"]""";

    private const string After =
        """["firewall.portForwards","dhcp.lanAddress","dhcp.prefixLength","dhcp.rangeStart","dhcp.rangeEnd","contentFilter.enabled","contentFilter.blockedDomains","contentFilter.categories","vpn.peers"]""";

    public override void Up() =>
        Update.Table("contracts").Set(new { subscriber_fields = After }).Where(new { name = "standard", subscriber_fields = Before });

    public override void Down() =>
        Update.Table("contracts").Set(new { subscriber_fields = Before }).Where(new { name = "standard", subscriber_fields = After });
}
