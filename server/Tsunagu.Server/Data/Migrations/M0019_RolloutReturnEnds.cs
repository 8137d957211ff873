using FluentMigrator;

namespace Tsunagu.Server.Data.Migrations;

/// <summary>
/// A return after an abort ends: while a member is being returned, <c>return_to</c> is the pattern it returns to and
/// <c>target_before</c> the unit's target pattern before the abort set it (null: none). When the unit runs that pattern
/// again, or the operator sets its target, the return ends (<c>return_to</c> cleared) and, in the first case, the
/// target it had before comes back, so a later rollout or the operator can move the unit again. Returns begun before
/// it are given their <c>return_to</c> from the outcome text.
/// </summary>
[Migration(19, "rollout members' return in progress and the target before it")]
public sealed class M0019_RolloutReturnEnds : Migration
{
    public override void Up()
    {
        Alter.Table("rollout_units")
            .AddColumn("return_to").AsString(64).Nullable()
            .AddColumn("target_before").AsString(64).Nullable();
        Create.Index("ix_rollout_units_return_to").OnTable("rollout_units").OnColumn("return_to").Ascending();
        // returns begun before this migration ('returning to X', written by M0017's abort) end like new ones; the target
        // before them is unknown (null: none comes back)
        Execute.Sql("UPDATE rollout_units SET return_to = substr(returned, 14) WHERE returned LIKE 'returning to %'");
    }

    public override void Down()
    {
        Delete.Index("ix_rollout_units_return_to").OnTable("rollout_units");
        Delete.Column("return_to").Column("target_before").FromTable("rollout_units");
    }
}
