using FluentMigrator;

namespace Tsunagu.Server.Data.Migrations;

/// <summary>
/// A unit's cache statistics as its last ready report gave them (squid's counters since the cache started): requests,
/// hits, bytes served to the LAN and bytes of them served from the cache, and when they were reported.
/// </summary>
[Migration(16, "unit cache statistics from the ready report")]
public sealed class M0016_UnitCacheStatistics : Migration
{
    public override void Up()
    {
        Alter.Table("units")
            .AddColumn("cache_requests").AsInt64().Nullable()
            .AddColumn("cache_hits").AsInt64().Nullable()
            .AddColumn("cache_bytes_served").AsInt64().Nullable()
            .AddColumn("cache_bytes_saved").AsInt64().Nullable()
            .AddColumn("cache_reported_at").AsString().Nullable();
    }

    public override void Down()
    {
        Delete.Column("cache_reported_at").FromTable("units");
        Delete.Column("cache_bytes_saved").FromTable("units");
        Delete.Column("cache_bytes_served").FromTable("units");
        Delete.Column("cache_hits").FromTable("units");
        Delete.Column("cache_requests").FromTable("units");
    }
}
