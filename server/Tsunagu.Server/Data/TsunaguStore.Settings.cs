using Dapper;

namespace Tsunagu.Server.Data;

// Settings (part of the catalogue snapshot).
public sealed partial class TsunaguStore
{
    // ---- settings ------------------------------------------------------------------------------------------

    public string? GetSetting(string key)
    {
        using var c = Open();
        return c.QuerySingleOrDefault<string>("SELECT value FROM settings WHERE key = @key", new { key });
    }

    /// <summary>
    /// Sets a setting, with <paramref name="audit"/> (when given) in the same transaction; settings are part of the
    /// catalogue snapshot, so this moves the catalogue stamp.
    /// </summary>
    public void SetSetting(string key, string value, AuditEntry? audit = null)
    {
        if (key == CatalogueStampKey)
        {
            throw new ArgumentException($"setting {key} is kept by the store itself", nameof(key));
        }
        CatalogueWrite((c, tx) =>
        {
            c.Execute(UpsertSettingSql, new { key, value }, tx);
            WriteAudit(c, tx, audit);
            return 0;
        });
    }

    private const string UpsertSettingSql = "INSERT INTO settings (key, value) VALUES (@key, @value) ON CONFLICT(key) DO UPDATE SET value = excluded.value";
}
