using System.Text.Json;
using Dapper;
using Tsunagu.Protocol;

namespace Tsunagu.Server.Data;

/// <summary>The columns of a unit a steady check compares with what the unit says (<see cref="SteadyCheckStore.GetSteadyCheckAsync"/>).</summary>
public sealed class SteadyUnitRow
{
    public string Mac { get; set; } = "";
    public string State { get; set; } = UnitStates.Registered;
    public string? Pattern { get; set; }
    public string? TargetPattern { get; set; }
    public string? Inventory { get; set; }
    public long? LastBundleVersion { get; set; }
    public long SettingsRevision { get; set; } = 1;
    public string? DecommissionedAt { get; set; }
    public string? VpnPublicKey { get; set; }
    public long? VpnListenPort { get; set; }
    public string? VpnEndpointAddress { get; set; }
    public string? LastError { get; set; }

    public const string Columns = "mac, state, pattern, target_pattern, inventory, last_bundle_version, settings_revision, decommissioned_at, " +
                                  "vpn_public_key, vpn_listen_port, vpn_endpoint_address, last_error";
}

/// <summary>What <see cref="SteadyCheckStore.RecordSteadyCheckAsync"/> came to.</summary>
public enum SteadyCheckResult
{
    /// <summary>Nothing changed: recorded as a ready report would have been, and the next nonce handed out.</summary>
    Steady,

    /// <summary>The nonce was taken, but the unit's row or its configuration differ from what the unit says: nothing else written.</summary>
    Changed,

    /// <summary>The nonce was taken by another request first: nothing written.</summary>
    NonceGone,
}

/// <summary>What a steady check that found nothing to do writes (<see cref="SteadyCheckStore.RecordSteadyCheckAsync"/>).</summary>
/// <see cref="VpnReported"/>: the unit sent a VPN report (the same as the row's, or the check would not be steady), which
/// refreshes vpn_reported_at as a ready report's does.
public sealed record SteadyCheckWrite(string Mac, string NonceId, bool Candidate, Inventory Inventory, string Pattern, string? TargetPattern,
    long SettingsRevision, long? ConfigRevision, string? WanAddress, UnitCacheReport? Cache, ChallengeRow Next, bool VpnReported = false);

/// <summary>Steady checks: what one reads in one round trip, and what one that found nothing to do writes.</summary>
public sealed class SteadyCheckStore
{
    private readonly TsunaguStore _store;

    internal SteadyCheckStore(TsunaguStore store) => _store = store;

    /// <summary>Ends the ready history entry a steady check writes (the ready report's entry has none): the history tells them apart.</summary>
    public const string SteadyCheckSuffix = " (steady check)";

    /// <summary>
    /// What a steady check reads, in one round trip of three rows by their keys: the steady-check nonce
    /// <paramref name="nonceId"/> of <paramref name="mac"/>, the unit's row and the catalogue stamp. Null when
    /// there is no nonce of that id, unit and purpose, or it expired by <paramref name="now"/>; otherwise the nonce, the
    /// unit's row (null when not registered) and the current catalogue (loaded again only when its stamp moved).
    /// </summary>
    public async Task<(ChallengeRow Nonce, SteadyUnitRow? Unit, CatalogueSnapshot Catalogue)?> GetSteadyCheckAsync(string nonceId, string mac, DateTimeOffset now,
        CancellationToken ct = default)
    {
        // reads only, so on a connection that sets nothing when it opens (a unit report's relaxes its commits first)
        await using var c = await _store.OpenAsync(ct);
        // three rows by their keys; the unit's is not made to depend on the nonce's, which a concurrent check may take
        // between the statements (the unit would then look unregistered)
        await using var read = await c.QueryMultipleAsync(new CommandDefinition($"""
            SELECT id, mac, purpose, nonce, expires_at FROM challenges WHERE id = @nonceId AND mac = @mac AND purpose = @purpose;
            SELECT {SteadyUnitRow.Columns} FROM units WHERE mac = @mac;
            {CatalogueStore.CatalogueStampSql};
            """, new { nonceId, mac, purpose = ProofPurpose.SteadyCheck, key = CatalogueStore.CatalogueStampKey }, cancellationToken: ct));
        var nonce = await read.ReadSingleOrDefaultAsync<ChallengeRow>();
        var unit = await read.ReadSingleOrDefaultAsync<SteadyUnitRow>();
        var stamp = await read.ReadSingleOrDefaultAsync<string>();
        if (nonce is null || DateTimeOffset.Parse(nonce.ExpiresAt, System.Globalization.CultureInfo.InvariantCulture) <= now)
        {
            return null;
        }
        return (nonce, unit, await _store.Catalogue.CatalogueAtAsync(c, stamp, ct));
    }

    /// <summary>The ready history entry's text, for a ready report (told whether the revision became final) and a steady check alike.</summary>
    public static string ReadyDetail(string? pattern, long? configRevision, bool finalized) =>
        $"ready on {pattern ?? "no verified pattern"}" + (configRevision is { } r ? $", configuration revision {r}{(finalized ? " (now final)" : "")}" : "");

    /// <summary>
    /// A steady check whose proof the caller verified, in one transaction: the nonce is taken (single use; another request
    /// that took it first leaves this one <see cref="SteadyCheckResult.NonceGone"/> with nothing written). When the caller
    /// found nothing to do (<see cref="SteadyCheckWrite.Candidate"/>), the unit's row is written as a ready report writes it
    /// (last_seen, WAN address, cache statistics; the inventory, pattern, state Ready and final revision are what it holds)
    /// only if it still is what the caller compared: Ready, no last error, the same inventory, pattern and target, no newer settings revision, the
    /// configuration revision the unit applied its newest and final (none when the unit applied none); then the next nonce
    /// is stored and the history entry written unless it repeats the unit's newest. Otherwise only the nonce is taken
    /// (<see cref="SteadyCheckResult.Changed"/>). It waits for the disk, as taking a host challenge does: a nonce once
    /// taken is never accepted again after a crash.
    /// </summary>
    public async Task<SteadyCheckResult> RecordSteadyCheckAsync(SteadyCheckWrite w, CancellationToken ct = default)
    {
        var mac = w.Mac;
        var at = _store.Time.GetUtcNow();
        var now = TsunaguStore.Timestamp(at);
        await using var c = await _store.OpenAsync(ct);
        await using var tx = await _store.BeginAsync(c, ct);
        if (await c.ExecuteAsync(new CommandDefinition("DELETE FROM challenges WHERE id = @NonceId AND mac = @mac AND purpose = @purpose",
                new { w.NonceId, mac, purpose = ProofPurpose.SteadyCheck }, tx, cancellationToken: ct)) != 1)
        {
            await tx.RollbackAsync(ct);
            return SteadyCheckResult.NonceGone;
        }
        if (!w.Candidate)
        {
            await tx.CommitAsync(ct);
            return SteadyCheckResult.Changed;
        }
        var target = w.TargetPattern is null ? "target_pattern IS NULL" : "target_pattern = @TargetPattern";
        var config = w.ConfigRevision is null
            ? "NOT EXISTS (SELECT 1 FROM unit_configs WHERE mac = @mac)"
            : """
              EXISTS (SELECT 1 FROM unit_configs WHERE mac = @mac AND revision = @ConfigRevision AND status = 'final')
                AND NOT EXISTS (SELECT 1 FROM unit_configs WHERE mac = @mac AND revision > @ConfigRevision)
              """;
        var cache = w.Cache;
        var wrote = await c.ExecuteAsync(new CommandDefinition($"""
            UPDATE units SET wan_address = COALESCE(@WanAddress, wan_address), last_seen = @now,
                   cache_requests = COALESCE(@cacheRequests, cache_requests), cache_hits = COALESCE(@cacheHits, cache_hits),
                   cache_bytes_served = COALESCE(@cacheServed, cache_bytes_served), cache_bytes_saved = COALESCE(@cacheSaved, cache_bytes_saved),
                   cache_reported_at = COALESCE(@cacheAt, cache_reported_at), vpn_reported_at = COALESCE(@vpnAt, vpn_reported_at)
            WHERE mac = @mac AND decommissioned_at IS NULL AND last_error IS NULL AND state = @ready AND inventory = @inventory AND pattern = @Pattern
              AND settings_revision <= @SettingsRevision AND {target} AND {config}
            """, new
        {
            mac, w.WanAddress, now, ready = UnitStates.Ready, inventory = JsonSerializer.Serialize(w.Inventory, ProtocolJson.Default.Inventory),
            w.Pattern, w.SettingsRevision, w.TargetPattern, w.ConfigRevision,
            cacheRequests = cache?.Requests, cacheHits = cache?.Hits, cacheServed = cache?.BytesServed, cacheSaved = cache?.BytesSaved,
            cacheAt = cache is null ? null : now, vpnAt = w.VpnReported ? now : null,
        }, tx, cancellationToken: ct));
        if (wrote == 0)
        {
            await tx.CommitAsync(ct);
            return SteadyCheckResult.Changed;
        }
        await UnitStore.InsertChallengeAsync(c, tx, w.Next, ct);
        var detail = ReadyDetail(w.Pattern, w.ConfigRevision, finalized: false) + SteadyCheckSuffix;
        var entry = !(_store.LastEvent.TryGetValue(mac, out var last) && last.Kind == UnitEventKinds.Ready && last.Detail == detail);
        if (entry) { await HistoryStore.InsertUnitEventAsync(c, tx, mac, now, UnitEventKinds.Ready, detail, failed: false, ct); }
        await tx.CommitAsync(ct);
        _store.LastSeenWritten[mac] = at;
        if (entry) { _store.LastEvent[mac] = (UnitEventKinds.Ready, detail); }
        return SteadyCheckResult.Steady;
    }
}
