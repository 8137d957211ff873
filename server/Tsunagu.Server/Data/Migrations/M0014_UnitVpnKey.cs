using FluentMigrator;

namespace Tsunagu.Server.Data.Migrations;

/// <summary>
/// What a unit reports of its VPN with its ready report: its WireGuard public key (44 characters of base64), the UDP
/// port it listens on (null while its VPN is off), the address the host saw the report come from, and when.
/// </summary>
[Migration(14, "unit VPN: WireGuard public key, listen port, endpoint address")]
public sealed class M0014_UnitVpnKey : Migration
{
    public override void Up()
    {
        Alter.Table("units")
            .AddColumn("vpn_public_key").AsString(44).Nullable()
            .AddColumn("vpn_listen_port").AsInt32().Nullable()
            .AddColumn("vpn_endpoint_address").AsString(45).Nullable()
            .AddColumn("vpn_reported_at").AsString().Nullable();
    }

    public override void Down()
    {
        Delete.Column("vpn_reported_at").FromTable("units");
        Delete.Column("vpn_endpoint_address").FromTable("units");
        Delete.Column("vpn_listen_port").FromTable("units");
        Delete.Column("vpn_public_key").FromTable("units");
    }
}
