using FluentMigrator;

namespace Tsunagu.Server.Data.Migrations;

/// <summary>
/// A unit's own recurring maintenance window (<see cref="Tsunagu.Protocol.MaintenanceWindow"/>, stored as written back by
/// it; null: none), in the unit's local time: every update below importance 5 waits for it, on the host and on the unit
/// (<see cref="Tsunagu.Protocol.UpdatePolicy.UnitWindow"/>).
/// </summary>
[Migration(24, "units: own maintenance window")]
public sealed class M0024_UnitMaintenanceWindows : Migration
{
    public override void Up()
    {
        Alter.Table("units").AddColumn("maintenance_window").AsString(64).Nullable();
    }

    public override void Down()
    {
        Delete.Column("maintenance_window").FromTable("units");
    }
}
