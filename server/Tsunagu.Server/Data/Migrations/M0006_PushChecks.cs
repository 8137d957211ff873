using FluentMigrator;

namespace Tsunagu.Server.Data.Migrations;

/// <summary>Forced checks and their delivery per unit: the nonce each unit must acknowledge, retries, acknowledgement.</summary>
[Migration(6, "push checks")]
public sealed class M0006_PushChecks : Migration
{
    public override void Up()
    {
        Create.Table("push_checks")
            .WithColumn("check_id").AsString(32).NotNullable().PrimaryKey()
            .WithColumn("mac").AsString(17).NotNullable().PrimaryKey()
            .WithColumn("nonce").AsString(32).NotNullable()
            .WithColumn("importance").AsInt64().NotNullable()
            .WithColumn("actor").AsString().NotNullable()
            .WithColumn("created_at").AsString().NotNullable()
            .WithColumn("sent_at").AsString().Nullable()
            .WithColumn("attempts").AsInt64().NotNullable().WithDefaultValue(0)
            .WithColumn("delivered_at").AsString().Nullable();
        Create.Index("ix_push_checks_mac").OnTable("push_checks").OnColumn("mac").Ascending().OnColumn("created_at").Ascending();
        Create.Index("ix_push_checks_pending").OnTable("push_checks").OnColumn("delivered_at").Ascending().OnColumn("created_at").Ascending();
    }

    public override void Down() => Delete.Table("push_checks");
}
