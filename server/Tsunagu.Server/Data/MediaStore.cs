using Dapper;
using Tsunagu.Protocol;

namespace Tsunagu.Server.Data;

/// <summary>Registered install media.</summary>
public sealed class MediaStore
{
    private readonly TsunaguStore _store;

    internal MediaStore(TsunaguStore store) => _store = store;

    // ---- install media -----------------------------------------------------------------------------------

    /// <summary>Registers a medium, with <paramref name="audit"/> (when given) in the same transaction.</summary>
    public async Task AddMediumAsync(string digest, string name, AuditEntry? audit = null, CancellationToken ct = default)
    {
        await _store.InsertAsync("INSERT INTO media (digest, name, created_at) VALUES (@digest, @name, @now)", new { digest, name, now = _store.Now() }, $"medium {digest} is already registered", audit, ct);
    }

    public async Task<MediaRegistration?> GetMediumAsync(string digest, CancellationToken ct = default)
    {
        await using var c = await _store.OpenAsync(ct);
        return await c.QuerySingleOrDefaultAsync<MediumRow>(new CommandDefinition("SELECT digest, name FROM media WHERE digest = @digest", new { digest }, cancellationToken: ct)) is { } m
            ? new MediaRegistration(m.Digest, m.Name) : null;
    }

    /// <summary>
    /// What a unit's check of an install medium records, in one transaction that waits for the disk: the audit entry
    /// (<c>media.accepted</c> when <paramref name="medium"/> is the registration of <paramref name="digest"/>, else
    /// <c>media.rejected</c>) and, for a rejected medium, <paramref name="rejected"/> as the unit's last error (the unit
    /// seen now). A failure, or the unit hanging up, leaves nothing of it.
    /// </summary>
    public async Task RecordMediaCheckAsync(string mac, string digest, MediaRegistration? medium, string rejected, CancellationToken ct = default)
    {
        var at = _store.Time.GetUtcNow();
        var now = TsunaguStore.Timestamp(at);
        await using var c = await _store.OpenAsync(ct);
        await using var tx = await _store.BeginAsync(c, ct);
        await TsunaguStore.InsertAuditAsync(c, tx, now, mac, medium is null ? "media.rejected" : "media.accepted", digest, medium?.Name, ct);
        if (medium is null)
        {
            await c.ExecuteAsync(new CommandDefinition("UPDATE units SET last_seen = @now, last_error = @rejected WHERE mac = @mac AND decommissioned_at IS NULL",
                new { mac, now, rejected }, tx, cancellationToken: ct));
        }
        await tx.CommitAsync(ct);
        if (medium is null) { _store.LastSeenWritten[mac] = at; }
    }

    public async Task<IReadOnlyList<MediaRegistration>> ListMediaAsync(CancellationToken ct = default)
    {
        await using var c = await _store.OpenAsync(ct);
        return (await c.QueryAsync<MediumRow>(new CommandDefinition("SELECT digest, name FROM media ORDER BY created_at, digest", cancellationToken: ct))).Select(m => new MediaRegistration(m.Digest, m.Name)).ToList();
    }
}
