using FluentMigrator;

namespace Tsunagu.Server.Data.Migrations;

/// <summary>Digests of genuine install media (patent 0037).</summary>
[Migration(3, "genuine install media")]
public sealed class M0003_Media : Migration
{
    public override void Up()
    {
        Create.Table("media")
            .WithColumn("digest").AsString(64).PrimaryKey()
            .WithColumn("name").AsString().NotNullable()
            .WithColumn("created_at").AsString().NotNullable();
    }

    public override void Down() => Delete.Table("media");
}
