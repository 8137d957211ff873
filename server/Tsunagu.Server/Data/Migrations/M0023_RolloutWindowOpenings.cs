using FluentMigrator;

namespace Tsunagu.Server.Data.Migrations;

/// <summary>
/// How far the rollout engine has looked for its group's maintenance window opening (null: since the rollout was
/// created): the waiting units are told to check once per opening, by one replica, across restarts.
/// </summary>
[Migration(23, "rollouts: window openings looked at until")]
public sealed class M0023_RolloutWindowOpenings : Migration
{
    public override void Up()
    {
        Alter.Table("rollouts").AddColumn("window_looked_at").AsString(40).Nullable();
    }

    public override void Down()
    {
        Delete.Column("window_looked_at").FromTable("rollouts");
    }
}
