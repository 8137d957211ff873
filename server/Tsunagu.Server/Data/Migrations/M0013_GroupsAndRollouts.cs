using FluentMigrator;

namespace Tsunagu.Server.Data.Migrations;

/// <summary>
/// Groups of units (a static list of MACs, or a filter evaluated when used) and staged rollouts: a rollout moves a
/// group's units from one install pattern to another through an update program, wave by wave; its members and the
/// wave each is in are rows, so a rollout survives a restart and is shared by replicas.
/// </summary>
[Migration(13, "unit groups, rollouts and their members")]
public sealed class M0013_GroupsAndRollouts : Migration
{
    public override void Up()
    {
        Create.Table("unit_groups")
            .WithColumn("name").AsString(64).NotNullable().PrimaryKey()
            .WithColumn("kind").AsString(16).NotNullable() // static | dynamic
            .WithColumn("definition").AsString(int.MaxValue).NotNullable() // JSON: the MACs, or the filter
            .WithColumn("created_by").AsString(128).NotNullable()
            .WithColumn("created_at").AsString(40).NotNullable();
        Create.Table("rollouts")
            .WithColumn("name").AsString(64).NotNullable().PrimaryKey()
            .WithColumn("group_name").AsString(64).NotNullable()
            .WithColumn("from_pattern").AsString(64).NotNullable()
            .WithColumn("to_pattern").AsString(64).NotNullable()
            .WithColumn("update_id").AsString(128).NotNullable()
            .WithColumn("waves").AsString(4000).NotNullable() // JSON: each wave's size as the operator gave it
            .WithColumn("success_percent").AsInt64().NotNullable()
            .WithColumn("error_percent").AsInt64().NotNullable()
            .WithColumn("on_error").AsString(16).NotNullable() // pause | abort
            .WithColumn("min_wave_seconds").AsInt64().NotNullable()
            .WithColumn("state").AsString(16).NotNullable() // running | paused | aborted | completed
            .WithColumn("open_waves").AsInt64().NotNullable()
            .WithColumn("wave_opened_at").AsString(40).NotNullable()
            .WithColumn("errors_since").AsString(40).NotNullable() // failures reported before this (a resume) do not count again
            .WithColumn("reason").AsString(1024).Nullable()
            .WithColumn("created_by").AsString(128).NotNullable()
            .WithColumn("created_at").AsString(40).NotNullable()
            .WithColumn("updated_at").AsString(40).NotNullable();
        Create.Index("ix_rollouts_transition").OnTable("rollouts").OnColumn("from_pattern").Ascending().OnColumn("to_pattern").Ascending();
        Create.Table("rollout_units")
            .WithColumn("rollout").AsString(64).NotNullable().PrimaryKey()
            .WithColumn("mac").AsString(17).NotNullable().PrimaryKey()
            .WithColumn("wave").AsInt64().NotNullable() // 0-based
            .WithColumn("joined_at").AsString(40).NotNullable();
        Create.Index("ix_rollout_units_mac").OnTable("rollout_units").OnColumn("mac").Ascending();
    }

    public override void Down()
    {
        Delete.Table("rollout_units");
        Delete.Table("rollouts");
        Delete.Table("unit_groups");
    }
}
