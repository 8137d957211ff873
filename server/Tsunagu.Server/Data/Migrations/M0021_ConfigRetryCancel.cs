using FluentMigrator;

namespace Tsunagu.Server.Data.Migrations;

/// <summary>
/// A failed configuration revision's retries can be cancelled (by the subscriber): who cancelled them and when, on the
/// revision the cancel was made on. The host makes no further attempt of a cancelled revision (patent 0070 retries).
/// </summary>
[Migration(21, "unit_configs: retry cancelled")]
public sealed class M0021_ConfigRetryCancel : Migration
{
    public override void Up()
    {
        Alter.Table("unit_configs")
            .AddColumn("retry_cancelled_at").AsString().Nullable()
            .AddColumn("retry_cancelled_by").AsString().Nullable();
    }

    public override void Down()
    {
        Delete.Column("retry_cancelled_by").FromTable("unit_configs");
        Delete.Column("retry_cancelled_at").FromTable("unit_configs");
    }
}
