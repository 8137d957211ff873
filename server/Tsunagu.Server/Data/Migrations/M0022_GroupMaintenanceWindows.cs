using FluentMigrator;

namespace Tsunagu.Server.Data.Migrations;

/// <summary>
/// A group's recurring maintenance window (<see cref="Tsunagu.Protocol.MaintenanceWindow"/>, stored as written back by it; null:
/// none): a rollout of the group offers its update of importance 4 or below to a unit only inside the window, in the
/// unit's local time.
/// </summary>
[Migration(22, "unit_groups: maintenance window")]
public sealed class M0022_GroupMaintenanceWindows : Migration
{
    public override void Up()
    {
        Alter.Table("unit_groups").AddColumn("maintenance_window").AsString(64).Nullable();
    }

    public override void Down()
    {
        Delete.Column("maintenance_window").FromTable("unit_groups");
    }
}
