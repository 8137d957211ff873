using Dapper;

namespace Tsunagu.Server.Data;

// Settings (part of the catalogue snapshot).
public sealed partial class TsunaguStore
{
    // ---- settings ------------------------------------------------------------------------------------------

    public async Task<string?> GetSettingAsync(string key, CancellationToken ct = default)
    {
        await using var c = await OpenAsync(ct);
        return await c.QuerySingleOrDefaultAsync<string>(new CommandDefinition("SELECT value FROM settings WHERE key = @key", new { key }, cancellationToken: ct));
    }

    /// <summary>
    /// Sets a setting, with <paramref name="audit"/> (when given) in the same transaction; settings are part of the
    /// catalogue snapshot, so this moves the catalogue stamp.
    /// </summary>
    public async Task SetSettingAsync(string key, string value, AuditEntry? audit = null, CancellationToken ct = default)
    {
        if (key == CatalogueStampKey)
        {
            throw new ArgumentException($"setting {key} is kept by the store itself", nameof(key));
        }
        await CatalogueWriteAsync(async (c, tx) =>
        {
            await c.ExecuteAsync(new CommandDefinition(UpsertSettingSql, new { key, value }, tx, cancellationToken: ct));
            await WriteAuditAsync(c, tx, audit, ct);
            return 0;
        }, ct);
    }

    private const string UpsertSettingSql = "INSERT INTO settings (key, value) VALUES (@key, @value) ON CONFLICT(key) DO UPDATE SET value = excluded.value";
}
