using FluentMigrator;

namespace Tsunagu.Server.Data.Migrations;

/// <summary>
/// Importance end to end and fleet grouping: each unit's time zone (its update windows are local hours there), the
/// reason a push was sent (a configuration push does not force updates), the attempt of a service configuration
/// revision that retries a failed one (patent 0070), and tags on units.
/// </summary>
[Migration(10, "unit time zones, push reasons, configuration retries, unit tags")]
public sealed class M0010_ImportanceAndRollouts : Migration
{
    public override void Up()
    {
        Alter.Table("units").AddColumn("time_zone").AsString(64).Nullable();
        Alter.Table("push_checks").AddColumn("reason").AsString(16).Nullable();
        Alter.Table("unit_configs")
            .AddColumn("attempt").AsInt64().NotNullable().WithDefaultValue(1)
            .AddColumn("retry_of").AsInt64().Nullable();
        Create.Table("unit_tags")
            .WithColumn("mac").AsString(17).NotNullable().PrimaryKey()
            .WithColumn("tag").AsString(64).NotNullable().PrimaryKey();
        Create.Index("ix_unit_tags_tag").OnTable("unit_tags").OnColumn("tag").Ascending();
    }

    public override void Down()
    {
        Delete.Table("unit_tags");
        Delete.Column("retry_of").FromTable("unit_configs");
        Delete.Column("attempt").FromTable("unit_configs");
        Delete.Column("reason").FromTable("push_checks");
        Delete.Column("time_zone").FromTable("units");
    }
}
