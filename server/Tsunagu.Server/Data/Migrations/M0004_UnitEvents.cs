using FluentMigrator;

namespace Tsunagu.Server.Data.Migrations;

/// <summary>Each unit's history as the host saw it: version checks, ready reports, configuration acknowledgements.</summary>
[Migration(4, "unit events")]
public sealed class M0004_UnitEvents : Migration
{
    public override void Up()
    {
        Create.Table("unit_events")
            .WithColumn("id").AsInt64().PrimaryKey().Identity()
            .WithColumn("mac").AsString(17).NotNullable()
            .WithColumn("at").AsString().NotNullable()
            .WithColumn("kind").AsString().NotNullable()
            .WithColumn("detail").AsString().Nullable()
            .WithColumn("failed").AsInt64().NotNullable().WithDefaultValue(0);
        Create.Index("ix_unit_events_mac").OnTable("unit_events").OnColumn("mac").Ascending().OnColumn("id").Descending();
        Create.Index("ix_unit_events_at").OnTable("unit_events").OnColumn("at").Ascending();
    }

    public override void Down() => Delete.Table("unit_events");
}
