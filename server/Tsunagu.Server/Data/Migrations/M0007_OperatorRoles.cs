using FluentMigrator;

namespace Tsunagu.Server.Data.Migrations;

/// <summary>
/// Operator roles: each operator account has one (administrator, release-manager, support, auditor). Accounts made
/// before roles existed could do everything, so they become administrators.
/// </summary>
[Migration(7, "operator roles")]
public sealed class M0007_OperatorRoles : Migration
{
    public override void Up() =>
        Alter.Table("operators").AddColumn("role").AsString(32).NotNullable().WithDefaultValue("administrator");

    public override void Down() => Delete.Column("role").FromTable("operators");
}
