using FluentMigrator;

namespace Tsunagu.Server.Data.Migrations;

/// <summary>
/// What a rollout did to each member, so an abort can return them: the pattern a member ran when the rollout first
/// offered it the update (<c>previous_pattern</c>, with <c>offered_at</c>), and, after an abort that returns units, what
/// became of it (<c>returned</c>: returning to a pattern, or why it cannot).
/// </summary>
[Migration(17, "rollout members' previous pattern and return after an abort")]
public sealed class M0017_RolloutReturns : Migration
{
    public override void Up()
    {
        Alter.Table("rollout_units")
            .AddColumn("previous_pattern").AsString(64).Nullable()
            .AddColumn("offered_at").AsString(40).Nullable()
            .AddColumn("returned").AsString(512).Nullable();
    }

    public override void Down()
    {
        Delete.Column("previous_pattern").Column("offered_at").Column("returned").FromTable("rollout_units");
    }
}
