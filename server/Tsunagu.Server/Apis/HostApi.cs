using System.Text.Json;
using Microsoft.AspNetCore.Http.HttpResults;
using Tsunagu.Protocol;
using Tsunagu.Server.Data;
using Tsunagu.Server.Security;

namespace Tsunagu.Server.Apis;

/// <summary>The host server (patent 60): version check, update delivery and reports, service configuration (S300-S800).</summary>
public static class HostApi
{
    public static void MapHostApi(this IEndpointRouteBuilder app)
    {
        app.MapPost(Routes.HostChallenge, async (ChallengeRequest request, UnitAuthentication auth) =>
            await auth.ChallengeAsync(request, ProofPurpose.Host)).RequireRateLimiting(Throttling.UnitAuthPolicy);

        app.MapPost(Routes.HostSession, (SessionRequest request, UnitAuthentication auth, ServerOptions options, HttpContext http) =>
            auth.Session(request, ProofPurpose.Host, TokenScope.Host, options.HostTokenLifetime, http)).RequireRateLimiting(Throttling.UnitAuthPolicy);

        var host = app.MapGroup("").RequireTokenScope(TokenScope.Host);
        host.MapPost(Routes.VersionCheck, VersionCheck).ProducesProblem(StatusCodes.Status404NotFound);
        host.MapPost(Routes.UpdateReport, UpdateReport).ProducesProblem(StatusCodes.Status404NotFound).ProducesProblem(StatusCodes.Status409Conflict);
        host.MapGet(Routes.Artifacts + "/{sha256}", Artifact).ProducesProblem(StatusCodes.Status404NotFound);
        host.MapGet(Routes.ServiceConfig, ServiceConfig).ProducesProblem(StatusCodes.Status404NotFound);
        host.MapPost(Routes.ServiceConfigAck, ServiceConfigAck).ProducesProblem(StatusCodes.Status404NotFound);
        host.MapPost(Routes.Ready, Ready);
        host.MapPost(Routes.MediaCheck, MediaCheck);
        // proven by a single-use nonce, not a token (Units/SteadyChecks)
        Units.SteadyChecks.SteadyCheckApi.MapSteadyCheckApi(app);
    }

    /// <summary>Most bytes a unit's request body may have: units send small status documents.</summary>
    public const long MaxUnitBodyBytes = 64 * 1024;

    /// <summary>Checks what a unit reports about itself before any of it is stored; null when it is well-formed.</summary>
    public static string? InventoryError(Inventory? inventory)
    {
        if (inventory?.Applications is null) { return "inventory: required, with hardwareVersion, osVersion and applications"; }
        if (!InputRules.IsText(inventory.HardwareVersion, 64)) { return "inventory.hardwareVersion: required; " + InputRules.Text("inventory.hardwareVersion", 64); }
        if (!InputRules.IsText(inventory.OsVersion, 64)) { return "inventory.osVersion: required; " + InputRules.Text("inventory.osVersion", 64); }
        if (inventory.Applications.Count > Catalogue.CatalogueService.MaxApplications)
        {
            return $"inventory.applications: at most {Catalogue.CatalogueService.MaxApplications} applications";
        }
        foreach (var (app, version) in inventory.Applications)
        {
            if (!InputRules.IsIdentifier(app)) { return InputRules.Identifier("inventory.applications (name)"); }
            if (!InputRules.IsIdentifier(version)) { return InputRules.Identifier($"inventory.applications.{app}"); }
        }
        if (inventory.LastBundle is { } counter && (counter.Version < 1 || !InputRules.IsIdentifier(counter.BundleId)))
        {
            return "inventory.lastBundle: version at least 1 and a bundle id";
        }
        return null;
    }

    /// <summary>
    /// The inventory as it may be stored: its bundle counter only when it names a bundle this server offers (an update
    /// program of that id whose bundle has that version); otherwise without it, so that a unit cannot raise its own
    /// counter past every real bundle and refuse its own updates after a reset.
    /// </summary>
    private static async Task<Inventory> WithVerifiedCounterAsync(Inventory inventory, long? known, TsunaguStore store, ArtifactStore artifacts,
        ILogger log, string mac, CancellationToken ct)
    {
        if (inventory.LastBundle is not { } counter || (known is { } k && counter.Version <= k)) { return inventory; }
        if (await store.Catalogue.GetUpdateProgramAsync(counter.BundleId, ct) is { } program && artifacts.PathOf(program.ArtifactSha256) is { } path)
        {
            try
            {
                await using var file = File.OpenRead(path);
                var header = await Tsunagu.Protocol.Bundles.BundleFormat.ReadHeaderAsync(file, ct);
                if (header.ParseManifest().Version == counter.Version) { return inventory; }
            }
            catch (Tsunagu.Protocol.Bundles.BundleCheckException)
            {
                // a stored artifact that is not a bundle cannot vouch for a counter
            }
        }
        log.LogWarning("unit {Mac} reports bundle counter {Version} of {Bundle}, which no offered bundle has; not recorded", mac, counter.Version, InputRules.Quote(counter.BundleId));
        return inventory with { LastBundle = null };
    }

    /// <summary>
    /// Records the unit's fall back to <paramref name="pattern"/> after it reported an update installed, when its row and
    /// <paramref name="inventory"/>'s verified bundle counter say so (<see cref="HistoryStore.RecordFallBackAsync"/>), with
    /// a warning and the failure counted in <c>tsunagu_update_reports_total</c>.
    /// </summary>
    private static async Task FallBackAsync(TsunaguStore store, UnitCheckRow known, string pattern, Inventory inventory, Metrics.ServerMetrics metrics, ILogger log, CancellationToken ct)
    {
        if (await store.History.RecordFallBackAsync(known, pattern, inventory.LastBundle, ct) is { } fellBack)
        {
            log.LogWarning("unit {Mac}: {FellBack}", known.Mac, fellBack);
            metrics.UpdateReported(success: false);
        }
    }

    private static async Task<Results<Ok<VersionCheckResponse>, ProblemHttpResult>> VersionCheck(VersionCheckRequest request, HttpContext http, TsunaguStore store, ServerOptions options,
        TimeProvider time, ArtifactStore artifacts, Metrics.ServerMetrics metrics, Fleet.Rollouts.RolloutService rollouts, Fleet.IHostLoad hostLoad, ILogger<VersionCheckRequest> log)
    {
        var mac = http.Caller().Subject;
        if (InventoryError(request.Inventory) is { } invalid) { return Problems.BadRequest(invalid); }
        if (request.Load is { } l && !(double.IsFinite(l.Cpu) && double.IsFinite(l.Wan) && l.Cpu is >= 0 and <= 1 && l.Wan is >= 0 and <= 1))
        {
            return Problems.BadRequest("load: cpu and wan are fractions from 0 to 1");
        }
        if (!InputRules.IsOptionalText(request.PushNonce, 64)) { return Problems.BadRequest(InputRules.Text("pushNonce", 64)); }
        // one connection, two point reads (the unit, the catalogue stamp); patterns, programs and policy come from memory
        var (unit, catalogue) = await store.Catalogue.GetUnitWithCatalogueAsync(mac, http.RequestAborted);
        if (unit is null)
        {
            return Problems.NotFound($"unit {mac} is no longer registered");
        }
        request = request with { Inventory = await WithVerifiedCounterAsync(request.Inventory, unit.LastBundleVersion, store, artifacts, log, mac, http.RequestAborted) };
        // The pattern is what the unit actually runs: after a wiped flash it is the factory pattern again.
        var actual = catalogue.FindPattern(request.Inventory);
        if (actual is null)
        {
            // the inventory, the state, the last error and the failed history entry: one transaction
            await store.Units.RecordOffPatternCheckAsync(mac, request.Inventory, "inventory matches no verified install pattern",
                $"{(request.Forced ? "forced" : "periodic")}: software matches no verified install pattern", http.RequestAborted);
            log.LogWarning("unit {Mac} runs no verified pattern: {Apps}", mac, string.Join(", ", request.Inventory.Applications.Select(a => $"{a.Key} {a.Value}")));
            metrics.CheckIn(Metrics.ServerMetrics.CheckResults.OffPattern);
            return TypedResults.Ok(new VersionCheckResponse(null, unit.TargetPattern, null, PolicySettings.From(catalogue), options.CheckIntervalSeconds,
                "the unit's software matches no verified install pattern", PowerOnSpreadSeconds: options.PowerOnSpreadSeconds, ServerTime: time.GetUtcNow(),
                SettingsRevision: checked((int)unit.SettingsRevision)));
        }
        if (actual.Id != unit.Pattern)
        {
            log.LogInformation("unit {Mac} reports pattern {Actual}; the host had {Recorded}", mac, actual.Id, unit.Pattern ?? "none");
            // back on the old pattern after reporting an update installed: that update failed for the unit, recorded before
            // the rollout's gate below reads the unit's failures (it is never offered the update again in that rollout)
            await FallBackAsync(store, unit, actual.Id, request.Inventory, metrics, log, http.RequestAborted);
        }
        // the program to the unit's target, or a held way back, or the way forward (the steady check decides the same)
        var program = await rollouts.ProgramForAsync(mac, catalogue, actual.Id, unit.TargetPattern, http.RequestAborted);
        var policy = PolicySettings.From(catalogue);
        if (unit.LowWindowStart is { } ws && unit.LowWindowEnd is { } we)
        {
            policy = policy with { LowWindowStartHour = (int)ws, LowWindowEndHour = (int)we };
        }
        if (unit.TimeZone is { } zone)
        {
            policy = policy with { TimeZone = zone }; // the unit's own zone (its table row) over the fleet's default
        }
        if (unit.MaintenanceWindow is { } own)
        {
            policy = policy with { UnitWindow = own }; // its own maintenance window: host and unit wait for it alike
        }
        UpdateOffer? offer = null;
        string? deferred = null;
        CheckOffer? offering = null;
        if (program is not null)
        {
            var load = request.Load ?? new UnitLoad(0, 0);
            var localNow = ImportancePolicy.LocalNow(policy, time.GetUtcNow(), time.LocalTimeZone);
            // a rollout holding the transition lets only the units of its open waves through (Fleet/Rollouts)
            var admission = await rollouts.AdmitAsync(mac, program, ImportancePolicy.Zone(policy, time.LocalTimeZone), ct: http.RequestAborted);
            // the host's own load (patent 0064) counts for importance 4 and 3 only: read only for them
            var host = program.Importance is 3 or 4 ? hostLoad.Current() : (double?)null;
            deferred = admission.Deferred ?? ImportancePolicy.Decide((int)program.Importance, load, policy, localNow, request.Forced, host);
            if (deferred is null)
            {
                // recorded with the check below: the program still there, the first offer of a rollout's member (and, for a
                // way back, the target it goes back to) only while the rollout still runs
                offering = Fleet.Rollouts.RolloutService.OfferOf(mac, program, admission, wayBack: unit.TargetPattern is null && catalogue.IsWayBack(program));
                offer = new UpdateOffer(program.Id, program.FromPattern, program.ToPattern, (int)program.Importance,
                    $"{Routes.Artifacts}/{program.ArtifactSha256}", program.ArtifactSha256, program.ArtifactSize);
            }
        }
        // The offer's records, the inventory (or last_seen) and the history entry: one transaction. A check that changes
        // nothing writes nothing: no inventory update, last_seen at most once a minute (TsunaguStore.LastSeenResolution),
        // and a periodic check identical to the last history entry is not repeated.
        string Detail() => $"{(request.Forced ? "forced" : "periodic")} on {actual.Id}: " +
                           (offer is not null ? $"offered {offer.UpdateId}" : deferred is not null ? $"update {program!.Id} deferred: {deferred}" : "up to date");
        var (wrote, withheld) = await store.Units.RecordCheckAsync(unit, request.Inventory, actual.Id, offer is null ? UnitStates.Configuring : UnitStates.Updating, Detail(),
            request.Forced, offering, http.RequestAborted);
        if (withheld != OfferWithheld.None)
        {
            // withheld in the transaction (nothing of it written): the rollout stopped or the program went since they were
            // read; the check is recorded as deferred
            deferred = await rollouts.WithheldAsync(offering!, withheld, http.RequestAborted);
            offer = null;
            (wrote, _) = await store.Units.RecordCheckAsync(unit, request.Inventory, actual.Id, UnitStates.Configuring, Detail(), request.Forced, null, http.RequestAborted);
        }
        if (deferred is not null)
        {
            log.LogInformation("unit {Mac}: update {Update} deferred: {Reason}", mac, program!.Id, deferred);
        }
        var row = wrote ? await store.Units.GetUnitForCheckAsync(mac, http.RequestAborted) : unit;
        metrics.CheckIn(offer is not null ? Metrics.ServerMetrics.CheckResults.Offered : deferred is not null ? Metrics.ServerMetrics.CheckResults.Deferred : Metrics.ServerMetrics.CheckResults.UpToDate);
        var counter = row is { LastBundleVersion: { } v, LastBundleId: { } id } ? new Tsunagu.Protocol.Bundles.BundleCounter(v, id) : null;
        return TypedResults.Ok(new VersionCheckResponse(actual.Id, unit.TargetPattern, offer, policy, options.CheckIntervalSeconds, deferred, counter,
            options.PowerOnSpreadSeconds, time.GetUtcNow(), checked((int)unit.SettingsRevision), DeferredImportance: deferred is not null ? (int)program!.Importance : null));
    }

    private static async Task<Results<Ok<UpdateReportAck>, ProblemHttpResult>> UpdateReport(UpdateReport report, HttpContext http, TsunaguStore store, ArtifactStore artifacts, Metrics.ServerMetrics metrics, ILogger<UpdateReport> log)
    {
        var mac = http.Caller().Subject;
        if (!InputRules.IsIdentifier(report.UpdateId)) { return Problems.BadRequest(InputRules.Identifier("updateId")); }
        if (InventoryError(report.Inventory) is { } invalid) { return Problems.BadRequest(invalid); }
        if (report.Error is { Length: > 2048 }) { return Problems.BadRequest("error: at most 2048 characters"); }
        if (report.InstallId is not null && !InstallIds.IsValid(report.InstallId)) { return Problems.BadRequest("installId: 32 lowercase hexadecimal digits"); }
        if (await store.Catalogue.GetUpdateProgramAsync(report.UpdateId, http.RequestAborted) is null)
        {
            return Problems.NotFound($"update program {report.UpdateId} does not exist");
        }
        report = report with { Inventory = await WithVerifiedCounterAsync(report.Inventory, (await store.Units.GetUnitForCheckAsync(mac, http.RequestAborted))?.LastBundleVersion, store, artifacts, log, mac, http.RequestAborted) };
        // The new pattern is recorded only from the unit's own report of what it now runs.
        var pattern = await store.Catalogue.FindPatternAsync(report.Inventory, http.RequestAborted);
        // the report, the inventory, the unit's last error, the audit and the history entry: one transaction
        var recorded = await store.History.RecordUpdateOutcomeAsync(new UpdateOutcome(mac, report.UpdateId, report.Success, report.Error, report.Inventory, pattern?.Id,
            pattern is null ? UnitStates.OffPattern : UnitStates.Configuring,
            report.Success ? null : $"update {report.UpdateId} failed: {report.Error}",
            report.Success ? $"{report.UpdateId} installed, now on {pattern?.Id ?? "no verified pattern"}" : $"{report.UpdateId} failed: {report.Error}",
            report.InstallId), http.RequestAborted);
        if (!recorded.IsNew)
        {
            // the unit sends its report again (it never saw the answer): the same answer, nothing written or counted
            if (recorded.UpdateId != report.UpdateId || recorded.Success != report.Success)
            {
                return Problems.Conflict($"install {report.InstallId} was reported as {(recorded.Success ? "a success" : "a failure")} of update {recorded.UpdateId}; " +
                                         "a report of the same install cannot say otherwise");
            }
            return TypedResults.Ok(new UpdateReportAck(recorded.UpdateId, recorded.Pattern));
        }
        metrics.UpdateReported(report.Success);
        return TypedResults.Ok(new UpdateReportAck(report.UpdateId, pattern?.Id));
    }

    /// <summary>
    /// An artifact the unit may download: sent by this server (ranges served), or, with
    /// <see cref="ServerOptions.ArtifactRedirectPrefix"/>, authorized here and sent by nginx in front
    /// (X-Accel-Redirect to the prefix plus the digest; nginx serves the ranges from the shared artifacts directory).
    /// </summary>
    private static async Task<Results<PhysicalFileHttpResult, Ok, ProblemHttpResult>> Artifact(string sha256, TsunaguStore store, ArtifactStore artifacts, ServerOptions options, HttpContext http)
    {
        if (!ArtifactStore.IsDigest(sha256) || !await store.Catalogue.ArtifactIsOfferedAsync(sha256, http.RequestAborted) || artifacts.PathOf(sha256) is not { } path)
        {
            return Problems.NotFound($"artifact {sha256} is not offered by this server");
        }
        if (options.ArtifactRedirectPrefix is { } prefix)
        {
            http.Response.Headers["X-Accel-Redirect"] = prefix + sha256;
            http.Response.ContentType = "application/octet-stream";
            return TypedResults.Ok();
        }
        return TypedResults.PhysicalFile(path, "application/octet-stream", enableRangeProcessing: true);
    }

    private static async Task<Results<Ok<ServiceConfigResponse>, ProblemHttpResult>> ServiceConfig(HttpContext http, TsunaguStore store)
    {
        var mac = http.Caller().Subject;
        var latest = await store.ServiceConfigs.LatestUnitConfigAsync(mac, http.RequestAborted);
        if (latest is null)
        {
            return Problems.NotFound($"unit {mac} has no service configuration assigned");
        }
        var document = JsonSerializer.Deserialize(latest.Document, ProtocolJson.Default.ServiceConfiguration)!;
        await store.Units.TouchAsync(mac, UnitStates.Configuring, ct: http.RequestAborted);
        return TypedResults.Ok(new ServiceConfigResponse((int)latest.Revision, document));
    }

    private static async Task<Results<Ok<ServiceConfigAck>, ProblemHttpResult>> ServiceConfigAck(ServiceConfigAck ack, HttpContext http, TsunaguStore store, Metrics.ServerMetrics metrics)
    {
        var mac = http.Caller().Subject;
        if (ack.Error is { Length: > 2048 }) { return Problems.BadRequest("error: at most 2048 characters"); }
        // the revision's status, the unit's last error and the history entry: one transaction
        if (!await store.ServiceConfigs.AckUnitConfigAsync(mac, ack.Revision, ack.Success, ack.Error,
                (ack.Success ? null : $"service configuration {ack.Revision} failed: {ack.Error}",
                 ack.Success ? $"revision {ack.Revision} applied" : $"revision {ack.Revision} failed: {ack.Error}"), ct: http.RequestAborted))
        {
            return Problems.NotFound($"unit {mac} has no service configuration revision {ack.Revision}");
        }
        metrics.ConfigReported(ack.Success);
        return TypedResults.Ok(ack);
    }

    /// <summary>Patent 0037: the unit's install manager sends the digest of an inserted medium; only registered media are genuine.</summary>
    private static async Task<Results<Ok<MediaCheckResponse>, ProblemHttpResult>> MediaCheck(MediaCheckRequest request, HttpContext http, TsunaguStore store, ILogger<MediaCheckRequest> log)
    {
        var mac = http.Caller().Subject;
        var (digest, problem) = ArtifactStore.ReadDigest(request.Digest);
        if (problem is not null) { return Problems.BadRequest(problem); }
        var medium = await store.Media.GetMediumAsync(digest, http.RequestAborted);
        // the audit entry and, for a rejected medium, the unit's last error: one transaction
        await store.Media.RecordMediaCheckAsync(mac, digest, medium, $"install medium {digest[..12]}... is not genuine: rejected", http.RequestAborted);
        if (medium is null)
        {
            log.LogWarning("unit {Mac} presented an install medium that is not genuine ({Digest})", mac, digest);
        }
        return TypedResults.Ok(new MediaCheckResponse(digest, medium is not null, medium?.Name));
    }

    /// <summary>What is wrong with a unit's VPN report, or null: the key must be WireGuard's base64 of 32 bytes, the port 1-65535.</summary>
    internal static string? VpnReportError(UnitVpnReport? vpn) => vpn switch
    {
        null => null,
        { PublicKey: var key } when !ServiceConfigValidator.IsWireGuardKey(key) =>
            $"vpn.publicKey: '{InputRules.Quote(key)}' is not a WireGuard public key (32 bytes in base64, 44 characters)",
        { ListenPort: < 1 or > 65535 } => $"vpn.listenPort: {vpn.ListenPort} is not a port (1-65535)",
        _ => null,
    };

    /// <summary>The address the host sees a request come from (after trusted forwarding headers), IPv4 unmapped; null when unknown.</summary>
    internal static string? SeenAddress(HttpContext http) => http.Connection.RemoteIpAddress is { } seen
        ? (seen.IsIPv4MappedToIPv6 ? seen.MapToIPv4() : seen).ToString()
        : null;

    private static async Task<Results<Ok<ReadyAck>, ProblemHttpResult>> Ready(ReadyReport report, HttpContext http, TsunaguStore store, ServerOptions options, ArtifactStore artifacts,
        Subscribers.ConfigRetries retries, TimeProvider time, Metrics.ServerMetrics metrics, ILogger<ReadyReport> log)
    {
        var mac = http.Caller().Subject;
        if (InventoryError(report.Inventory) is { } invalid) { return Problems.BadRequest(invalid); }
        if (report.WanAddress is not null && !ServiceConfigValidator.IsAddress(report.WanAddress)) { return Problems.BadRequest($"wanAddress: '{InputRules.Quote(report.WanAddress)}' is not an IP address"); }
        if (VpnReportError(report.Vpn) is { } badVpn) { return Problems.BadRequest(badVpn); }
        if (report.Cache?.Problem() is { } badCache) { return Problems.BadRequest(badCache); }
        if (report.BootProblem is { } problem && !InputRules.IsText(problem, ReadyReport.MaxBootProblemLength))
        {
            return Problems.BadRequest(InputRules.Text("bootProblem", ReadyReport.MaxBootProblemLength));
        }
        var known = await store.Units.GetUnitForCheckAsync(mac, http.RequestAborted);
        report = report with { Inventory = await WithVerifiedCounterAsync(report.Inventory, known?.LastBundleVersion, store, artifacts, log, mac, http.RequestAborted) };
        var pattern = await store.Catalogue.FindPatternAsync(report.Inventory, http.RequestAborted);
        // back on the old pattern after reporting an update installed (the version check does the same): recorded before
        // the report writes the pattern, so whoever reads the unit on the old pattern also finds the failure
        if (known is not null && pattern is not null) { await FallBackAsync(store, known, pattern.Id, report.Inventory, metrics, log, http.RequestAborted); }
        // patent 0070: a change is final once the unit, after applying it, confirms it is healthy with it; a boot problem
        // (an OS slot refused at boot: the unit's last error and a failed history entry), the inventory, the final revision
        // and the history entry are one transaction
        // the nonce the unit's next periodic check may prove itself with, in one request (Units/SteadyChecks), stored with the report
        var next = Units.SteadyChecks.SteadyCheckApi.NewNonce(mac, time, options);
        await store.ServiceConfigs.RecordReadyAsync(mac, report.Inventory, pattern?.Id, pattern is null ? UnitStates.OffPattern : UnitStates.Ready, report.WanAddress,
            report.ConfigRevision, finalized => SteadyCheckStore.ReadyDetail(pattern?.Id, report.ConfigRevision, finalized),
            report.Vpn, report.Vpn is null ? null : SeenAddress(http) ?? report.WanAddress, report.Cache, report.BootProblem, next, http.RequestAborted);
        if (report.BootProblem is { } bootProblem) { log.LogWarning("unit {Mac}: {Problem}", mac, bootProblem); }
        // patent 0070: the unit is healthy again: a change it failed to apply is retried now (bounded, with backoff)
        await retries.AfterReadyAsync(mac, http.RequestAborted);
        return TypedResults.Ok(new ReadyAck(pattern?.Id, options.CheckIntervalSeconds, Units.SteadyChecks.SteadyCheckApi.Wire(next)));
    }
}
