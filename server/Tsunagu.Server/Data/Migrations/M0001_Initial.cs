using FluentMigrator;

namespace Tsunagu.Server.Data.Migrations;

/// <summary>
/// The tables of patent figs. 6 and 8 and what the host needs beside them. Written once for SQLite and
/// PostgreSQL: timestamps are ISO-8601 UTC text, flags are 0/1 integers, documents are JSON text.
/// </summary>
[Migration(1, "initial schema")]
public sealed class M0001_Initial : Migration
{
    public override void Up()
    {
        Create.Table("units")
            .WithColumn("mac").AsString(17).PrimaryKey()
            .WithColumn("serial").AsString().NotNullable()
            .WithColumn("hardware_version").AsString().NotNullable()
            .WithColumn("isp_method").AsString().NotNullable()
            .WithColumn("isp_username").AsString().Nullable()
            .WithColumn("isp_password").AsString().Nullable()
            .WithColumn("ip_address").AsString().Nullable()
            .WithColumn("domain").AsString().Nullable()
            .WithColumn("vpn").AsString().Nullable()
            .WithColumn("global_ip").AsString().Nullable()
            .WithColumn("subscriber").AsString().Nullable()
            .WithColumn("state").AsString().NotNullable()
            .WithColumn("pattern").AsString().Nullable()
            .WithColumn("target_pattern").AsString().Nullable()
            .WithColumn("applied_config_revision").AsInt64().Nullable()
            .WithColumn("inventory").AsString().Nullable()
            .WithColumn("wan_address").AsString().Nullable()
            .WithColumn("low_window_start").AsInt64().Nullable()
            .WithColumn("low_window_end").AsInt64().Nullable()
            .WithColumn("online").AsInt64().NotNullable().WithDefaultValue(0)
            .WithColumn("presence_at").AsString().Nullable()
            .WithColumn("last_seen").AsString().Nullable()
            .WithColumn("last_error").AsString().Nullable()
            .WithColumn("created_at").AsString().NotNullable();
        Create.Index("units_pattern").OnTable("units").OnColumn("pattern");
        Create.Index("units_state").OnTable("units").OnColumn("state");

        Create.Table("challenges")
            .WithColumn("id").AsString().PrimaryKey()
            .WithColumn("mac").AsString(17).NotNullable()
            .WithColumn("purpose").AsString().NotNullable()
            .WithColumn("nonce").AsString().NotNullable()
            .WithColumn("expires_at").AsString().NotNullable();

        Create.Table("software")
            .WithColumn("app_id").AsString().NotNullable().PrimaryKey()
            .WithColumn("version").AsString().NotNullable().PrimaryKey()
            .WithColumn("name").AsString().NotNullable()
            .WithColumn("required_hardware").AsString().Nullable()
            .WithColumn("required_os").AsString().Nullable()
            .WithColumn("created_at").AsString().NotNullable();

        Create.Table("patches")
            .WithColumn("id").AsString().PrimaryKey()
            .WithColumn("name").AsString().NotNullable()
            .WithColumn("version").AsString().NotNullable()
            .WithColumn("target_app").AsString().NotNullable()
            .WithColumn("importance").AsInt64().NotNullable()
            .WithColumn("os_version").AsString().Nullable()
            .WithColumn("hardware_version").AsString().Nullable()
            .WithColumn("created_at").AsString().NotNullable();

        Create.Table("patterns")
            .WithColumn("id").AsString().PrimaryKey()
            .WithColumn("name").AsString().NotNullable()
            .WithColumn("hardware_version").AsString().NotNullable()
            .WithColumn("os_version").AsString().NotNullable()
            .WithColumn("applications").AsString().NotNullable()
            .WithColumn("status").AsString().NotNullable()
            .WithColumn("created_at").AsString().NotNullable()
            .WithColumn("verified_at").AsString().Nullable()
            .WithColumn("retired_at").AsString().Nullable();

        Create.Table("update_programs")
            .WithColumn("id").AsString().PrimaryKey()
            .WithColumn("from_pattern").AsString().NotNullable().ForeignKey("patterns", "id")
            .WithColumn("to_pattern").AsString().NotNullable().ForeignKey("patterns", "id")
            .WithColumn("importance").AsInt64().NotNullable()
            .WithColumn("priority").AsInt64().NotNullable()
            .WithColumn("artifact_sha256").AsString(64).NotNullable()
            .WithColumn("artifact_size").AsInt64().NotNullable()
            .WithColumn("created_at").AsString().NotNullable();
        Create.Index("update_programs_from").OnTable("update_programs").OnColumn("from_pattern");

        Create.Table("service_configs")
            .WithColumn("name").AsString().PrimaryKey()
            .WithColumn("document").AsString().NotNullable();

        Create.Table("unit_configs")
            .WithColumn("mac").AsString(17).NotNullable().PrimaryKey().ForeignKey("units", "mac")
            .WithColumn("revision").AsInt64().NotNullable().PrimaryKey()
            .WithColumn("document").AsString().NotNullable()
            .WithColumn("status").AsString().NotNullable()
            .WithColumn("error").AsString().Nullable()
            .WithColumn("origin").AsString().NotNullable().WithDefaultValue("operator")
            .WithColumn("created_at").AsString().NotNullable()
            .WithColumn("updated_at").AsString().Nullable();

        Create.Table("update_reports")
            .WithColumn("mac").AsString(17).NotNullable().PrimaryKey()
            .WithColumn("update_id").AsString().NotNullable().PrimaryKey()
            .WithColumn("success").AsInt64().NotNullable().PrimaryKey()
            .WithColumn("error").AsString().Nullable()
            .WithColumn("pattern").AsString().Nullable()
            .WithColumn("at").AsString().NotNullable();

        Create.Table("operators")
            .WithColumn("name").AsString().PrimaryKey()
            .WithColumn("password_hash").AsString().NotNullable();

        Create.Table("subscribers")
            .WithColumn("name").AsString().PrimaryKey()
            .WithColumn("password_hash").AsString().NotNullable();

        Create.Table("settings")
            .WithColumn("key").AsString().PrimaryKey()
            .WithColumn("value").AsString().NotNullable();

        Create.Table("audit")
            .WithColumn("id").AsInt64().PrimaryKey().Identity()
            .WithColumn("at").AsString().NotNullable()
            .WithColumn("actor").AsString().NotNullable()
            .WithColumn("action").AsString().NotNullable()
            .WithColumn("target").AsString().Nullable()
            .WithColumn("detail").AsString().Nullable();
    }

    public override void Down()
    {
        foreach (var table in new[] { "audit", "settings", "subscribers", "operators", "update_reports", "unit_configs", "service_configs",
                     "update_programs", "patterns", "patches", "software", "challenges", "units" })
        {
            Delete.Table(table);
        }
    }
}
