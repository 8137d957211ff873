using System.Data.Common;
using System.Text.Json;
using Dapper;
using Tsunagu.Protocol;

namespace Tsunagu.Server.Data;

/// <summary>
/// A change to a unit's service configuration was made from revision <see cref="Expected"/>, but the unit's newest revision
/// is <see cref="Actual"/> (someone saved meanwhile); nothing was written.
/// </summary>
public sealed class StaleConfigRevisionException(string mac, long expected, long actual)
    : Exception($"the service configuration of {mac} changed since revision {expected} (it is at revision {actual} now); nothing was stored: look at it again and redo the change")
{
    public string Mac { get; } = mac;
    public long Expected { get; } = expected;
    public long Actual { get; } = actual;
}

/// <summary>A named document as stored (a named service configuration, a contract's allow-list) and the digest a change made from it carries.</summary>
public sealed record NamedDocument(string Name, string Document)
{
    public string Digest => DigestOf(Document);

    public static string DigestOf(string stored) => Convert.ToHexStringLower(System.Security.Cryptography.SHA256.HashData(System.Text.Encoding.UTF8.GetBytes(stored)));
}

/// <summary>Service configurations: the named ones, and each unit's revisions with their acknowledgements.</summary>
public sealed class ServiceConfigStore
{
    private readonly TsunaguStore _store;

    internal ServiceConfigStore(TsunaguStore store) => _store = store;

    // ---- service configuration -------------------------------------------------------------------------

    /// <summary>Creates or replaces a named service configuration, with its audit entry (when given) in the same transaction.</summary>
    public async Task UpsertServiceConfigAsync(string name, ServiceConfiguration document, AuditEntry? audit = null, CancellationToken ct = default)
    {
        await using var c = await _store.OpenAsync(ct);
        await using var tx = await _store.BeginAsync(c, ct);
        await c.ExecuteAsync(new CommandDefinition("INSERT INTO service_configs (name, document) VALUES (@name, @doc) ON CONFLICT(name) DO UPDATE SET document = excluded.document",
            new { name, doc = JsonSerializer.Serialize(document, ProtocolJson.Default.ServiceConfiguration) }, tx, cancellationToken: ct));
        await _store.WriteAuditAsync(c, tx, audit, ct);
        await tx.CommitAsync(ct);
    }

    /// <summary>A named service configuration as stored (JSON), with its digest; null when there is none.</summary>
    public async Task<NamedDocument?> GetServiceConfigDocumentAsync(string name, CancellationToken ct = default)
    {
        await using var c = await _store.OpenAsync(ct);
        return await c.QuerySingleOrDefaultAsync<NamedDocument>(new CommandDefinition("SELECT name, document FROM service_configs WHERE name = @name", new { name }, cancellationToken: ct));
    }

    /// <summary>The named service configurations by name, each as stored (JSON).</summary>
    public async Task<IReadOnlyList<NamedDocument>> ListServiceConfigsAsync(CancellationToken ct = default)
    {
        await using var c = await _store.OpenAsync(ct);
        return (await c.QueryAsync<NamedDocument>(new CommandDefinition("SELECT name, document FROM service_configs ORDER BY name", cancellationToken: ct))).ToList();
    }

    /// <summary>
    /// Creates (<paramref name="expectedDigest"/> null: only when no configuration has that name) or changes (only while
    /// the stored document is still the one whose <see cref="NamedDocument.Digest"/> the change was made from) a named
    /// service configuration, with its audit entry, in one transaction.
    /// </summary>
    /// <exception cref="StoreConflictException">The name is taken (create), gone or changed since (change); nothing was written.</exception>
    public Task PutServiceConfigCheckedAsync(string name, ServiceConfiguration document, string? expectedDigest, AuditEntry audit, CancellationToken ct = default) =>
        PutNamedCheckedAsync("service_configs", "document", "service configuration", name, JsonSerializer.Serialize(document, ProtocolJson.Default.ServiceConfiguration),
            expectedDigest, audit, ct);

    // One row of a table keyed by name (service_configs, contracts; the table and column are the caller's constants),
    // written only as the caller expects to find it: absent, or holding the value whose digest it saw. The row is read in
    // the transaction that writes it (SQLite: the writer's lock from the start; PostgreSQL: the row locked), and a create
    // racing another create of the same name loses to the primary key.
    internal async Task PutNamedCheckedAsync(string table, string column, string what, string name, string value, string? expectedDigest, AuditEntry audit, CancellationToken ct)
    {
        try
        {
            await using var c = await _store.OpenAsync(ct);
            await using var tx = await _store.BeginAsync(c, ct);
            var stored = await c.QuerySingleOrDefaultAsync<string?>(new CommandDefinition(
                $"SELECT {column} FROM {table} WHERE name = @name" + (_store.Database.Kind == DatabaseKind.Postgres ? " FOR UPDATE" : ""), new { name }, tx, cancellationToken: ct));
            if (expectedDigest is null && stored is not null)
            {
                throw new StoreConflictException($"{what} {name} exists already: change it in its own form; nothing was stored");
            }
            if (expectedDigest is not null && stored is null)
            {
                throw new StoreConflictException($"{what} {name} does not exist any more; nothing was stored");
            }
            if (expectedDigest is not null && NamedDocument.DigestOf(stored!) != expectedDigest)
            {
                throw new StoreConflictException($"{what} {name} was changed since this page was shown; look at it again and redo the change; nothing was stored");
            }
            await c.ExecuteAsync(new CommandDefinition(stored is null
                ? $"INSERT INTO {table} (name, {column}) VALUES (@name, @value)"
                : $"UPDATE {table} SET {column} = @value WHERE name = @name", new { name, value }, tx, cancellationToken: ct));
            await _store.WriteAuditAsync(c, tx, audit, ct);
            await tx.CommitAsync(ct);
        }
        catch (DbException e) when (TsunaguStore.IsUniqueViolation(e))
        {
            throw new StoreConflictException($"{what} {name} was created by someone else at the same moment; nothing was stored");
        }
    }

    /// <summary>
    /// Deletes a named service configuration other than <paramref name="keep"/> (the one registration copies), with its
    /// audit entry; with <paramref name="expectedDigest"/>, only while the stored document is still that one.
    /// </summary>
    /// <exception cref="KeyNotFoundException">No configuration has that name.</exception>
    /// <exception cref="StoreConflictException">It is <paramref name="keep"/>, or it changed since; nothing was written.</exception>
    public Task DeleteServiceConfigAsync(string name, string keep, string? expectedDigest, AuditEntry audit, CancellationToken ct = default) =>
        DeleteNamedCheckedAsync("service_configs", "document", "service configuration", name, expectedDigest, audit,
            (_, _) => Task.FromResult(name == keep ? $"service configuration {name} is the one every unit registered gets as its first revision; change it instead" : null), ct);

    // One row of a table keyed by name deleted as the caller expects to find it (any value, or the one whose digest it
    // saw), unless refuse (read in the same transaction) names a reason; the row is read in the transaction that deletes it.
    internal async Task DeleteNamedCheckedAsync(string table, string column, string what, string name, string? expectedDigest, AuditEntry audit,
        Func<DbConnection, DbTransaction, Task<string?>> refuse, CancellationToken ct)
    {
        await using var c = await _store.OpenAsync(ct);
        await using var tx = await _store.BeginAsync(c, ct);
        var stored = await c.QuerySingleOrDefaultAsync<string?>(new CommandDefinition(
            $"SELECT {column} FROM {table} WHERE name = @name" + (_store.Database.Kind == DatabaseKind.Postgres ? " FOR UPDATE" : ""), new { name }, tx, cancellationToken: ct))
            ?? throw new KeyNotFoundException($"{what} {name} does not exist");
        if (expectedDigest is not null && NamedDocument.DigestOf(stored) != expectedDigest)
        {
            throw new StoreConflictException($"{what} {name} was changed since this page was shown; look at it again; nothing was deleted");
        }
        if (await refuse(c, tx) is { } why)
        {
            throw new StoreConflictException($"{why}; nothing was deleted");
        }
        await c.ExecuteAsync(new CommandDefinition($"DELETE FROM {table} WHERE name = @name", new { name }, tx, cancellationToken: ct));
        await _store.WriteAuditAsync(c, tx, audit, ct);
        await tx.CommitAsync(ct);
    }

    public async Task<ServiceConfiguration?> GetServiceConfigAsync(string name, CancellationToken ct = default)
    {
        await using var c = await _store.OpenAsync(ct);
        var doc = await c.QuerySingleOrDefaultAsync<string>(new CommandDefinition("SELECT document FROM service_configs WHERE name = @name", new { name }, cancellationToken: ct));
        return doc is null ? null : JsonSerializer.Deserialize(doc, ProtocolJson.Default.ServiceConfiguration);
    }

    /// <summary>
    /// Adds the next revision of a unit's service configuration, as provisional; the audit entry <paramref name="audit"/>
    /// makes of the revision (when given) commits with it. With <paramref name="expectedRevision"/> (the newest revision the
    /// change was made from; 0: none) the revision is added only while that is still the unit's newest: the comparison and
    /// the insert are one statement, and the (mac, revision) key refuses a second insert of the same revision, so of two
    /// saves made from the same revision exactly one is stored, the other gets <see cref="StaleConfigRevisionException"/>.
    /// Without it, a revision taken by a concurrent save is taken again as the next one.
    /// </summary>
    /// <exception cref="StaleConfigRevisionException">The unit's newest revision is not <paramref name="expectedRevision"/>; nothing was written.</exception>
    /// <exception cref="StoreConflictException">Concurrent saves kept taking the next revision (no expected revision given); nothing was written.</exception>
    public async Task<long> AddUnitConfigAsync(string mac, ServiceConfiguration document, string origin = "operator", Func<long, AuditEntry>? audit = null, long? expectedRevision = null, CancellationToken ct = default)
    {
        var doc = JsonSerializer.Serialize(document, ProtocolJson.Default.ServiceConfiguration);
        for (var attempt = 1; ; attempt++)
        {
            try
            {
                return await InsertNextUnitConfigAsync(mac, doc, origin, audit, expectedRevision, ct);
            }
            catch (DbException e) when (TsunaguStore.IsUniqueViolation(e))
            {
                if (expectedRevision is { } expected)
                {
                    throw new StaleConfigRevisionException(mac, expected, await LatestUnitConfigRevisionAsync(mac, ct));
                }
                if (attempt == 3)
                {
                    throw new StoreConflictException($"the service configuration of {mac} was changed by other saves at the same moment three times; send it again");
                }
            }
        }
    }

    private async Task<long> InsertNextUnitConfigAsync(string mac, string doc, string origin, Func<long, AuditEntry>? audit, long? expectedRevision, CancellationToken ct)
    {
        await using var c = await _store.OpenAsync(ct);
        await using var tx = await _store.BeginAsync(c, ct);
        // the comparison with the revision the change was made from and the insert are one statement (HAVING: only when the
        // newest revision is still the expected one); a concurrent insert of the same revision is refused by the primary key
        var guard = expectedRevision is null ? "" : "HAVING COALESCE(MAX(revision), 0) = @expectedRevision";
        var next = await c.QuerySingleOrDefaultAsync<long?>(new CommandDefinition($"""
            INSERT INTO unit_configs (mac, revision, document, status, origin, created_at)
            SELECT @mac, COALESCE(MAX(revision), 0) + 1, @doc, 'provisional', @origin, @now FROM unit_configs WHERE mac = @mac
            {guard}
            RETURNING revision
            """, new { mac, doc, origin, now = _store.Now(), expectedRevision = expectedRevision ?? 0 }, tx, cancellationToken: ct));
        if (next is not { } revision)
        {
            var actual = await c.ExecuteScalarAsync<long>(new CommandDefinition("SELECT COALESCE(MAX(revision), 0) FROM unit_configs WHERE mac = @mac", new { mac }, tx, cancellationToken: ct));
            throw new StaleConfigRevisionException(mac, expectedRevision!.Value, actual);
        }
        await _store.WriteAuditAsync(c, tx, audit?.Invoke(revision), ct);
        await tx.CommitAsync(ct);
        return revision;
    }

    /// <summary>The unit's newest revision number (0: it has none).</summary>
    public async Task<long> LatestUnitConfigRevisionAsync(string mac, CancellationToken ct = default)
    {
        await using var c = await _store.OpenAsync(ct);
        return await c.ExecuteScalarAsync<long>(new CommandDefinition("SELECT COALESCE(MAX(revision), 0) FROM unit_configs WHERE mac = @mac", new { mac }, cancellationToken: ct));
    }

    public async Task<UnitConfigRow?> LatestUnitConfigAsync(string mac, CancellationToken ct = default)
    {
        await using var c = await _store.OpenAsync(ct);
        return await c.QueryFirstOrDefaultAsync<UnitConfigRow>(new CommandDefinition("SELECT * FROM unit_configs WHERE mac = @mac ORDER BY revision DESC LIMIT 1", new { mac }, cancellationToken: ct));
    }

    public async Task<IReadOnlyList<UnitConfigRow>> ListUnitConfigsAsync(string mac, CancellationToken ct = default)
    {
        await using var c = await _store.OpenAsync(ct);
        return (await c.QueryAsync<UnitConfigRow>(new CommandDefinition("SELECT * FROM unit_configs WHERE mac = @mac ORDER BY revision", new { mac }, cancellationToken: ct))).ToList();
    }

    /// <summary>
    /// Records a unit's acknowledgement of a revision (idempotent: the same acknowledgement again changes nothing); with <paramref name="report"/>, also marks the unit seen (with its
    /// error, when it failed) and adds the history entry, all in the same transaction. False (nothing written) when
    /// the unit has no such revision.
    /// </summary>
    public async Task<bool> AckUnitConfigAsync(string mac, long revision, bool success, string? error, (string? LastError, string EventDetail)? report = null, CancellationToken ct = default)
    {
        var at = _store.Time.GetUtcNow();
        await using var c = await _store.OpenAsync(ct);
        await using var tx = await _store.BeginAsync(c, ct);
        var status = success ? ConfigStatus.Applied : ConfigStatus.Failed;
        var exists = await c.ExecuteScalarAsync<long>(new CommandDefinition("SELECT COUNT(*) FROM unit_configs WHERE mac = @mac AND revision = @revision", new { mac, revision }, tx, cancellationToken: ct)) > 0;
        if (!exists)
        {
            return false;
        }
        await c.ExecuteAsync(new CommandDefinition("""
            UPDATE unit_configs SET status = @status, error = @error, updated_at = @now
            WHERE mac = @mac AND revision = @revision AND status NOT IN ('final', @status)
            """, new { mac, revision, status, error, now = _store.Now() }, tx, cancellationToken: ct));
        if (success)
        {
            await c.ExecuteAsync(new CommandDefinition("UPDATE units SET applied_config_revision = @revision WHERE mac = @mac AND (applied_config_revision IS NULL OR applied_config_revision < @revision)",
                new { mac, revision }, tx, cancellationToken: ct));
        }
        if (report is { } r)
        {
            var now = TsunaguStore.Timestamp(at);
            await c.ExecuteAsync(new CommandDefinition("UPDATE units SET last_seen = @now, last_error = COALESCE(@LastError, last_error) WHERE mac = @mac", new { mac, now, r.LastError }, tx, cancellationToken: ct));
            await c.ExecuteAsync(new CommandDefinition("INSERT INTO unit_events (mac, at, kind, detail, failed) VALUES (@mac, @now, @kind, @EventDetail, @failed)",
                new { mac, now, kind = UnitEventKinds.Config, r.EventDetail, failed = success ? 0 : 1 }, tx, cancellationToken: ct));
        }
        await tx.CommitAsync(ct);
        if (report is { } written)
        {
            _store.LastSeenWritten[mac] = at;
            _store.LastEvent[mac] = (UnitEventKinds.Config, written.EventDetail);
        }
        return true;
    }

    /// <summary>
    /// A unit's ready report in one transaction: its bundle counter, inventory, pattern, state and WAN address; the
    /// revision it runs made final (when applied); and the history entry <paramref name="detail"/> writes (told whether
    /// the revision became final). True when the revision became final. It waits for the disk only when a revision is
    /// to become final or the bundle counter to rise (reported once); the rest the unit reports again next time.
    /// <paramref name="vpn"/> (checked by the caller) and <paramref name="vpnAddress"/> (where the report came from) replace
    /// the unit's VPN columns when given; a changed public key is written durably and named in the history entry.
    /// <paramref name="cache"/> (checked by the caller) replaces the unit's cache statistics when given.
    /// <paramref name="bootProblem"/> (checked by the caller: what went wrong at this boot) becomes the unit's last error and a
    /// failed history entry (<c>boot: ...</c>) before the ready one, in the same transaction, which then waits for the disk.
    /// <paramref name="nextNonce"/>, when given, is stored in the same transaction (the nonce the answer hands out for the
    /// unit's next steady check). A failure, or the unit hanging up, leaves nothing of the report.
    /// </summary>
    public async Task<bool> RecordReadyAsync(string mac, Inventory inventory, string? pattern, string state, string? wanAddress, long? configRevision, Func<bool, string> detail,
        UnitVpnReport? vpn = null, string? vpnAddress = null, UnitCacheReport? cache = null, string? bootProblem = null, ChallengeRow? nextNonce = null, CancellationToken ct = default)
    {
        var at = _store.Time.GetUtcNow();
        var now = TsunaguStore.Timestamp(at);
        bool once;
        await using (var read = await _store.OpenUnitReportAsync(ct))
        {
            once = bootProblem is not null || (configRevision is { } pending && await read.ExecuteScalarAsync<long>(new CommandDefinition(
                        "SELECT COUNT(*) FROM unit_configs WHERE mac = @mac AND revision = @pending AND status = 'applied'", new { mac, pending }, cancellationToken: ct)) > 0)
                   || (inventory.LastBundle is { } raised && await read.ExecuteScalarAsync<long>(new CommandDefinition(
                        "SELECT COUNT(*) FROM units WHERE mac = @mac AND (last_bundle_version IS NULL OR last_bundle_version < @Version)", new { mac, raised.Version }, cancellationToken: ct)) > 0)
                   || (vpn is not null && await read.ExecuteScalarAsync<string?>(new CommandDefinition("SELECT vpn_public_key FROM units WHERE mac = @mac", new { mac }, cancellationToken: ct)) != vpn.PublicKey);
        }
        await using var c = once ? await _store.OpenAsync(ct) : await _store.OpenUnitReportAsync(ct);
        await using var tx = await _store.BeginAsync(c, ct);
        if (bootProblem is not null)
        {
            // an OS slot refused at boot (dm-verity): the unit's last error and a failed history entry, before it is Ready
            await c.ExecuteAsync(new CommandDefinition("UPDATE units SET last_error = @bootProblem WHERE mac = @mac", new { mac, bootProblem }, tx, cancellationToken: ct));
            await HistoryStore.InsertUnitEventAsync(c, tx, mac, now, UnitEventKinds.Ready, $"boot: {bootProblem}", failed: true, ct);
        }
        if (inventory.LastBundle is { } counter)
        {
            await c.ExecuteAsync(new CommandDefinition("""
                UPDATE units SET last_bundle_version = @Version, last_bundle_id = @BundleId
                WHERE mac = @mac AND (last_bundle_version IS NULL OR last_bundle_version < @Version)
                """, new { mac, counter.Version, counter.BundleId }, tx, cancellationToken: ct));
        }
        // the cache statistics (when reported) in the same statement: a null leaves each column as it was
        await c.ExecuteAsync(new CommandDefinition("""
            UPDATE units SET inventory = @inventory, pattern = COALESCE(@pattern, pattern), state = @state,
                   wan_address = COALESCE(@wanAddress, wan_address), last_seen = @now,
                   cache_requests = COALESCE(@cacheRequests, cache_requests), cache_hits = COALESCE(@cacheHits, cache_hits),
                   cache_bytes_served = COALESCE(@cacheServed, cache_bytes_served), cache_bytes_saved = COALESCE(@cacheSaved, cache_bytes_saved),
                   cache_reported_at = COALESCE(@cacheAt, cache_reported_at)
            WHERE mac = @mac
            """, new
        {
            mac, inventory = JsonSerializer.Serialize(inventory, ProtocolJson.Default.Inventory), pattern, state, wanAddress, now,
            cacheRequests = cache?.Requests, cacheHits = cache?.Hits, cacheServed = cache?.BytesServed, cacheSaved = cache?.BytesSaved,
            cacheAt = cache is null ? null : now,
        }, tx, cancellationToken: ct));
        var finalized = configRevision is { } revision && await c.ExecuteAsync(new CommandDefinition(
            "UPDATE unit_configs SET status = 'final', updated_at = @now WHERE mac = @mac AND revision = @revision AND status = 'applied'",
            new { mac, revision, now }, tx, cancellationToken: ct)) > 0;
        var text = detail(finalized);
        if (vpn is not null)
        {
            var previous = await c.ExecuteScalarAsync<string?>(new CommandDefinition("SELECT vpn_public_key FROM units WHERE mac = @mac", new { mac }, tx, cancellationToken: ct));
            await c.ExecuteAsync(new CommandDefinition("""
                UPDATE units SET vpn_public_key = @PublicKey, vpn_listen_port = @ListenPort, vpn_endpoint_address = @vpnAddress, vpn_reported_at = @now
                WHERE mac = @mac
                """, new { mac, vpn.PublicKey, vpn.ListenPort, vpnAddress, now }, tx, cancellationToken: ct));
            if (previous is not null && previous != vpn.PublicKey)
            {
                text += $"; WireGuard public key changed from {previous} to {vpn.PublicKey}: peers must be given the new key";
            }
        }
        await HistoryStore.InsertUnitEventAsync(c, tx, mac, now, UnitEventKinds.Ready, text, failed: false, ct);
        if (nextNonce is not null) { await UnitStore.InsertChallengeAsync(c, tx, nextNonce, ct); }
        await tx.CommitAsync(ct);
        _store.LastSeenWritten[mac] = at;
        _store.LastEvent[mac] = (UnitEventKinds.Ready, text);
        return finalized;
    }

    /// <summary>Marks an applied revision final (the unit has confirmed it with the host after applying).</summary>
    public async Task<bool> FinalizeUnitConfigAsync(string mac, long revision, CancellationToken ct = default)
    {
        await using var c = await _store.OpenAsync(ct);
        return await c.ExecuteAsync(new CommandDefinition("UPDATE unit_configs SET status = 'final', updated_at = @now WHERE mac = @mac AND revision = @revision AND status = 'applied'",
            new { mac, revision, now = _store.Now() }, cancellationToken: ct)) > 0;
    }
}
