using System.Text.Json;
using Tsunagu.Protocol;
using Tsunagu.Server.Data;
using Tsunagu.Server.Security;

namespace Tsunagu.Server.Apis;

/// <summary>The host server (patent 60): version check, update delivery and reports, service configuration (S300-S800).</summary>
public static class HostApi
{
    public static void MapHostApi(this IEndpointRouteBuilder app)
    {
        app.MapPost(Routes.HostChallenge, (ChallengeRequest request, UnitAuthentication auth) =>
            auth.Challenge(request, ProofPurpose.Host)).RequireRateLimiting(Throttling.UnitAuthPolicy);

        app.MapPost(Routes.HostSession, (SessionRequest request, UnitAuthentication auth, ServerOptions options, HttpContext http) =>
            auth.Session(request, ProofPurpose.Host, TokenScope.Host, options.HostTokenLifetime, http)).RequireRateLimiting(Throttling.UnitAuthPolicy);

        var host = app.MapGroup("").RequireTokenScope(TokenScope.Host);
        host.MapPost(Routes.VersionCheck, VersionCheck);
        host.MapPost(Routes.UpdateReport, UpdateReport);
        host.MapGet(Routes.Artifacts + "/{sha256}", Artifact);
        host.MapGet(Routes.ServiceConfig, ServiceConfig);
        host.MapPost(Routes.ServiceConfigAck, ServiceConfigAck);
        host.MapPost(Routes.Ready, Ready);
        host.MapPost(Routes.MediaCheck, MediaCheck);
    }

    private static IResult VersionCheck(VersionCheckRequest request, HttpContext http, TsunaguStore store, ServerOptions options,
        TimeProvider time, ILogger<VersionCheckRequest> log)
    {
        var mac = http.Caller().Subject;
        // one connection, two point reads (the unit, the catalogue stamp); patterns, programs and policy come from memory
        var (unit, catalogue) = store.GetUnitWithCatalogue(mac);
        if (unit is null)
        {
            return Problems.NotFound($"unit {mac} is no longer registered");
        }
        if (request.Inventory?.Applications is null)
        {
            return Problems.BadRequest("inventory: required, with hardwareVersion, osVersion and applications");
        }
        // The pattern is what the unit actually runs: after a wiped flash it is the factory pattern again.
        var actual = catalogue.FindPattern(request.Inventory);
        if (actual is null)
        {
            store.RecordInventory(mac, request.Inventory, null, UnitStates.OffPattern);
            store.Touch(mac, error: "inventory matches no verified install pattern");
            store.AddUnitEvent(mac, UnitEventKinds.Check, $"{(request.Forced ? "forced" : "periodic")}: software matches no verified install pattern", failed: true);
            log.LogWarning("unit {Mac} runs no verified pattern: {Apps}", mac, string.Join(", ", request.Inventory.Applications.Select(a => $"{a.Key} {a.Value}")));
            return Results.Ok(new VersionCheckResponse(null, unit.TargetPattern, null, PolicySettings.From(catalogue), options.CheckIntervalSeconds,
                "the unit's software matches no verified install pattern", PowerOnSpreadSeconds: options.PowerOnSpreadSeconds));
        }
        if (actual.Id != unit.Pattern)
        {
            log.LogInformation("unit {Mac} reports pattern {Actual}; the host had {Recorded}", mac, actual.Id, unit.Pattern ?? "none");
        }
        var program = unit.TargetPattern == actual.Id ? null : catalogue.FindUpdateProgram(actual.Id, unit.TargetPattern);
        var policy = PolicySettings.From(catalogue);
        if (unit.LowWindowStart is { } ws && unit.LowWindowEnd is { } we)
        {
            policy = policy with { LowWindowStartHour = (int)ws, LowWindowEndHour = (int)we };
        }
        UpdateOffer? offer = null;
        string? deferred = null;
        if (program is not null)
        {
            var load = request.Load ?? new UnitLoad(0, 0);
            var localNow = TimeZoneInfo.ConvertTime(time.GetUtcNow(), time.LocalTimeZone);
            deferred = ImportancePolicy.Decide((int)program.Importance, load, policy, localNow, request.Forced);
            if (deferred is null)
            {
                offer = new UpdateOffer(program.Id, program.FromPattern, program.ToPattern, (int)program.Importance,
                    $"{Routes.Artifacts}/{program.ArtifactSha256}", program.ArtifactSha256, program.ArtifactSize);
            }
            else
            {
                log.LogInformation("unit {Mac}: update {Update} deferred: {Reason}", mac, program.Id, deferred);
            }
        }
        // A check that changes nothing writes nothing: no inventory update, last_seen at most once a minute
        // (TsunaguStore.LastSeenResolution), and a periodic check identical to the last history entry is not repeated.
        var wrote = store.RecordInventoryIfChanged(unit, request.Inventory, actual.Id, offer is null ? UnitStates.Configuring : UnitStates.Updating);
        var detail = $"{(request.Forced ? "forced" : "periodic")} on {actual.Id}: " +
                     (offer is not null ? $"offered {offer.UpdateId}" : deferred is not null ? $"update {program!.Id} deferred: {deferred}" : "up to date");
        if (request.Forced) { store.AddUnitEvent(mac, UnitEventKinds.Check, detail); }
        else { store.AddUnitEventUnlessRepeated(mac, UnitEventKinds.Check, detail); }
        var row = wrote ? store.GetUnitForCheck(mac) : unit;
        var counter = row is { LastBundleVersion: { } v, LastBundleId: { } id } ? new Tsunagu.Protocol.Bundles.BundleCounter(v, id) : null;
        return Results.Ok(new VersionCheckResponse(actual.Id, unit.TargetPattern, offer, policy, options.CheckIntervalSeconds, deferred, counter,
            options.PowerOnSpreadSeconds));
    }

    private static IResult UpdateReport(UpdateReport report, HttpContext http, TsunaguStore store)
    {
        var mac = http.Caller().Subject;
        if (report.Inventory?.Applications is null || string.IsNullOrEmpty(report.UpdateId))
        {
            return Problems.BadRequest("updateId and inventory are required");
        }
        if (store.GetUpdateProgram(report.UpdateId) is null)
        {
            return Problems.NotFound($"update program {report.UpdateId} does not exist");
        }
        // The new pattern is recorded only from the unit's own report of what it now runs.
        var pattern = store.FindPattern(report.Inventory);
        store.RecordUpdateReport(mac, report.UpdateId, report.Success, report.Error, pattern?.Id);
        store.RecordInventory(mac, report.Inventory, pattern?.Id, pattern is null ? UnitStates.OffPattern : UnitStates.Configuring);
        store.Touch(mac, error: report.Success ? null : $"update {report.UpdateId} failed: {report.Error}", clearError: report.Success);
        store.Audit(mac, report.Success ? "update.succeeded" : "update.failed", report.UpdateId, report.Error);
        store.AddUnitEvent(mac, UnitEventKinds.Update, report.Success ? $"{report.UpdateId} installed, now on {pattern?.Id ?? "no verified pattern"}"
            : $"{report.UpdateId} failed: {report.Error}", failed: !report.Success);
        return Results.Ok(new UpdateReportAck(report.UpdateId, pattern?.Id));
    }

    private static IResult Artifact(string sha256, TsunaguStore store, ArtifactStore artifacts)
    {
        if (!ArtifactStore.IsDigest(sha256) || !store.ArtifactIsOffered(sha256) || artifacts.PathOf(sha256) is not { } path)
        {
            return Problems.NotFound($"artifact {sha256} is not offered by this server");
        }
        return Results.File(path, "application/octet-stream", enableRangeProcessing: true);
    }

    private static IResult ServiceConfig(HttpContext http, TsunaguStore store)
    {
        var mac = http.Caller().Subject;
        var latest = store.LatestUnitConfig(mac);
        if (latest is null)
        {
            return Problems.NotFound($"unit {mac} has no service configuration assigned");
        }
        var document = JsonSerializer.Deserialize(latest.Document, ProtocolJson.Default.ServiceConfiguration)!;
        store.Touch(mac, UnitStates.Configuring);
        return Results.Ok(new ServiceConfigResponse((int)latest.Revision, document));
    }

    private static IResult ServiceConfigAck(ServiceConfigAck ack, HttpContext http, TsunaguStore store)
    {
        var mac = http.Caller().Subject;
        if (!store.AckUnitConfig(mac, ack.Revision, ack.Success, ack.Error))
        {
            return Problems.NotFound($"unit {mac} has no service configuration revision {ack.Revision}");
        }
        store.Touch(mac, error: ack.Success ? null : $"service configuration {ack.Revision} failed: {ack.Error}");
        store.AddUnitEvent(mac, UnitEventKinds.Config, ack.Success ? $"revision {ack.Revision} applied" : $"revision {ack.Revision} failed: {ack.Error}", failed: !ack.Success);
        return Results.Ok(ack);
    }

    /// <summary>Patent 0037: the unit's install manager sends the digest of an inserted medium; only registered media are genuine.</summary>
    private static IResult MediaCheck(MediaCheckRequest request, HttpContext http, TsunaguStore store, ILogger<MediaCheckRequest> log)
    {
        var mac = http.Caller().Subject;
        var digest = request.Digest?.ToLowerInvariant() ?? "";
        if (!ArtifactStore.IsDigest(digest)) { return Problems.BadRequest($"digest: '{request.Digest}' is not a SHA-256 in hex"); }
        var medium = store.GetMedium(digest);
        store.Audit(mac, medium is null ? "media.rejected" : "media.accepted", digest, medium?.Name);
        if (medium is null)
        {
            log.LogWarning("unit {Mac} presented an install medium that is not genuine ({Digest})", mac, digest);
            store.Touch(mac, error: $"install medium {digest[..12]}... is not genuine: rejected");
        }
        return Results.Ok(new MediaCheckResponse(digest, medium is not null, medium?.Name));
    }

    private static IResult Ready(ReadyReport report, HttpContext http, TsunaguStore store, ServerOptions options)
    {
        var mac = http.Caller().Subject;
        if (report.Inventory?.Applications is null)
        {
            return Problems.BadRequest("inventory: required");
        }
        var pattern = store.FindPattern(report.Inventory);
        store.RecordInventory(mac, report.Inventory, pattern?.Id, pattern is null ? UnitStates.OffPattern : UnitStates.Ready, report.WanAddress);
        // patent 0070: a change is final once the unit, after applying it, confirms it is healthy with it
        var finalized = report.ConfigRevision is { } revision && store.FinalizeUnitConfig(mac, revision);
        store.AddUnitEvent(mac, UnitEventKinds.Ready, $"ready on {pattern?.Id ?? "no verified pattern"}" +
            (report.ConfigRevision is { } r ? $", configuration revision {r}{(finalized ? " (now final)" : "")}" : ""));
        return Results.Ok(new ReadyAck(pattern?.Id, options.CheckIntervalSeconds));
    }
}
