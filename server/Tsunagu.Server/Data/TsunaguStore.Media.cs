using Dapper;
using Tsunagu.Protocol;

namespace Tsunagu.Server.Data;

// Registered install media.
public sealed partial class TsunaguStore
{
    // ---- install media -----------------------------------------------------------------------------------

    /// <summary>Registers a medium, with <paramref name="audit"/> (when given) in the same transaction.</summary>
    public async Task AddMediumAsync(string digest, string name, AuditEntry? audit = null, CancellationToken ct = default)
    {
        await InsertAsync("INSERT INTO media (digest, name, created_at) VALUES (@digest, @name, @now)", new { digest, name, now = Now() }, $"medium {digest} is already registered", audit, ct);
    }

    public async Task<MediaRegistration?> GetMediumAsync(string digest, CancellationToken ct = default)
    {
        await using var c = await OpenAsync(ct);
        return await c.QuerySingleOrDefaultAsync<MediumRow>(new CommandDefinition("SELECT digest, name FROM media WHERE digest = @digest", new { digest }, cancellationToken: ct)) is { } m
            ? new MediaRegistration(m.Digest, m.Name) : null;
    }

    public async Task<IReadOnlyList<MediaRegistration>> ListMediaAsync(CancellationToken ct = default)
    {
        await using var c = await OpenAsync(ct);
        return (await c.QueryAsync<MediumRow>(new CommandDefinition("SELECT digest, name FROM media ORDER BY created_at, digest", cancellationToken: ct))).Select(m => new MediaRegistration(m.Digest, m.Name)).ToList();
    }
}
