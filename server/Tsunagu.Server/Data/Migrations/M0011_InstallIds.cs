using FluentMigrator;

namespace Tsunagu.Server.Data.Migrations;

/// <summary>
/// Update reports keyed by install attempt: a row per report (its own id) with the unit's install id, unique per unit,
/// so a report sent again adds nothing while a second install of the same update (after a wiped `data`) is a second
/// row. Reports without an install id (units older than the field) keep the old key, (unit, update, result), as a
/// partial unique index. The old table's rows are copied over.
/// </summary>
[Migration(11, "update reports keyed by install id")]
public sealed class M0011_InstallIds : Migration
{
    public override void Up()
    {
        Create.Table("update_reports_keyed")
            .WithColumn("id").AsInt64().PrimaryKey().Identity()
            .WithColumn("mac").AsString(17).NotNullable()
            .WithColumn("update_id").AsString().NotNullable()
            .WithColumn("success").AsInt64().NotNullable()
            .WithColumn("error").AsString().Nullable()
            .WithColumn("pattern").AsString().Nullable()
            .WithColumn("at").AsString().NotNullable()
            .WithColumn("install_id").AsString(32).Nullable();
        Execute.Sql("""
            INSERT INTO update_reports_keyed (mac, update_id, success, error, pattern, at)
            SELECT mac, update_id, success, error, pattern, at FROM update_reports ORDER BY at
            """);
        Delete.Table("update_reports");
        Rename.Table("update_reports_keyed").To("update_reports");
        Create.Index("ux_update_reports_install").OnTable("update_reports").OnColumn("mac").Ascending().OnColumn("install_id").Ascending()
            .WithOptions().Unique();
        // SQLite and PostgreSQL both take a partial index in this form; NULL install ids are distinct in the index above
        Execute.Sql("CREATE UNIQUE INDEX ux_update_reports_legacy ON update_reports (mac, update_id, success) WHERE install_id IS NULL");
    }

    public override void Down()
    {
        Create.Table("update_reports_old")
            .WithColumn("mac").AsString(17).NotNullable().PrimaryKey()
            .WithColumn("update_id").AsString().NotNullable().PrimaryKey()
            .WithColumn("success").AsInt64().NotNullable().PrimaryKey()
            .WithColumn("error").AsString().Nullable()
            .WithColumn("pattern").AsString().Nullable()
            .WithColumn("at").AsString().NotNullable();
        Execute.Sql("""
            INSERT INTO update_reports_old (mac, update_id, success, error, pattern, at)
            SELECT mac, update_id, success, MIN(error), MIN(pattern), MIN(at) FROM update_reports GROUP BY mac, update_id, success
            """);
        Delete.Table("update_reports");
        Rename.Table("update_reports_old").To("update_reports");
    }
}
