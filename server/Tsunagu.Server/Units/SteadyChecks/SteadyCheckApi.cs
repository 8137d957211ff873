using System.Globalization;
using System.Text.Json;
using Microsoft.AspNetCore.Http.HttpResults;
using Tsunagu.Protocol;
using Tsunagu.Server.Apis;
using Tsunagu.Server.Data;
using Tsunagu.Server.Security;

namespace Tsunagu.Server.Units.SteadyChecks;

/// <summary>
/// A Ready unit's periodic check in one request (docs/protocol.md, "Steady check"): the unit proves itself over the
/// single-use nonce the host handed out in its previous answer (a ready report's or a steady check's), says what it runs
/// and what it applied; the host answers "nothing to do" and records what the ready report would have, in one
/// transaction, or "something changed" and the unit runs the full exchange.
/// </summary>
public static class SteadyCheckApi
{
    public static void MapSteadyCheckApi(this IEndpointRouteBuilder app) =>
        // per source, as /host/session: a proof is checked for every request
        app.MapPost(Routes.SteadyCheck, SteadyCheck).ProducesProblem(StatusCodes.Status400BadRequest).ProducesProblem(StatusCodes.Status401Unauthorized)
            .RequireRateLimiting(Throttling.UnitAuthPolicy);

    /// <summary>How long a nonce handed out for the next steady check is kept: two check intervals and an hour (the unit's jitter, a late check).</summary>
    public static TimeSpan NonceLifetime(ServerOptions options) => TimeSpan.FromSeconds(2.0 * options.CheckIntervalSeconds) + TimeSpan.FromHours(1);

    /// <summary>A new nonce for the unit's next steady check (not yet stored).</summary>
    public static ChallengeRow NewNonce(string mac, TimeProvider time, ServerOptions options) =>
        UnitAuthentication.NewChallenge(mac, ProofPurpose.SteadyCheck, time.GetUtcNow() + NonceLifetime(options));

    /// <summary>The nonce as the unit receives it.</summary>
    public static CheckNonce Wire(ChallengeRow row) =>
        new(row.Id, row.Nonce, DateTimeOffset.Parse(row.ExpiresAt, CultureInfo.InvariantCulture));

    /// <summary>What is wrong with the request's fields, or null; checked before anything is read or written.</summary>
    internal static string? RequestError(SteadyCheckRequest? request)
    {
        if (request is null) { return "body: a JSON object with mac, nonceId, proof, inventory and settingsRevision is required"; }
        if (!MacAddress.TryNormalize(request.Mac, out _)) { return $"mac: '{InputRules.Quote(request.Mac)}' is not a MAC address"; }
        if (string.IsNullOrEmpty(request.NonceId) || request.NonceId.Length > UnitAuthentication.MaxChallengeIdLength || !InputRules.IsText(request.NonceId, UnitAuthentication.MaxChallengeIdLength))
        {
            return $"nonceId: required, at most {UnitAuthentication.MaxChallengeIdLength} characters";
        }
        if (string.IsNullOrEmpty(request.Proof) || request.Proof.Length > UnitAuthentication.MaxProofLength || !InputRules.IsText(request.Proof, UnitAuthentication.MaxProofLength))
        {
            return $"proof: required, at most {UnitAuthentication.MaxProofLength} characters of base64";
        }
        if (HostApi.InventoryError(request.Inventory) is { } invalid) { return invalid; }
        if (request.SettingsRevision < 0) { return $"settingsRevision: {request.SettingsRevision} is not a revision (0 or more)"; }
        if (request.ConfigRevision is < 1) { return $"configRevision: {request.ConfigRevision} is not a revision (1 or more, or null: none applied)"; }
        if (request.WanAddress is not null && !ServiceConfigValidator.IsAddress(request.WanAddress)) { return $"wanAddress: '{InputRules.Quote(request.WanAddress)}' is not an IP address"; }
        if (HostApi.VpnReportError(request.Vpn) is { } badVpn) { return badVpn; }
        return request.Cache?.Problem();
    }

    private static async Task<Results<Ok<SteadyCheckResponse>, ProblemHttpResult>> SteadyCheck(SteadyCheckRequest request, HttpContext http, TsunaguStore store,
        ServerOptions options, TimeProvider time, UnitAuthentication authentication, Fleet.Rollouts.RolloutService rollouts, Metrics.ServerMetrics metrics)
    {
        if (RequestError(request) is { } invalid) { return Problems.BadRequest(invalid); }
        var mac = MacAddress.Normalize(request.Mac);
        var ct = http.RequestAborted;
        // one round trip reads the nonce, the unit's row and the catalogue stamp; an unknown or expired nonce goes no further
        if (await store.SteadyChecks.GetSteadyCheckAsync(request.NonceId, mac, time.GetUtcNow(), ct) is not var (nonce, found, catalogue))
        {
            metrics.UnitRefused(ProofPurpose.SteadyCheck, Metrics.ServerMetrics.RefusalReasons.BadChallenge);
            return Problems.Unauthorized(ProblemTypes.ChallengeExpired, "the nonce is unknown, used, expired or for another unit; run the full check");
        }
        if (await authentication.RefusalAsync(mac, found is not null, found?.DecommissionedAt is not null, ProofPurpose.SteadyCheck, nonce, request.Proof, http) is { } refused)
        {
            return refused;
        }
        var unit = found!; // an unregistered unit was refused
        var pattern = catalogue.FindPattern(request.Inventory)?.Id;
        // the program the version check would take up (a way back only when a rollout holds it): one decision for both
        var program = pattern is null ? null : await rollouts.ProgramForAsync(mac, catalogue, pattern, unit.TargetPattern, ct);
        var changed = Compare(request, unit, pattern, program, HostApi.SeenAddress(http) ?? request.WanAddress);
        var next = NewNonce(mac, time, options);
        var result = await store.SteadyChecks.RecordSteadyCheckAsync(new SteadyCheckWrite(mac, nonce.Id, changed is null, request.Inventory, pattern ?? "", unit.TargetPattern,
            request.SettingsRevision, request.ConfigRevision, request.WanAddress, request.Cache, next, request.Vpn is not null), ct);
        switch (result)
        {
            case SteadyCheckResult.NonceGone:
                metrics.UnitRefused(ProofPurpose.SteadyCheck, Metrics.ServerMetrics.RefusalReasons.BadChallenge);
                return Problems.Unauthorized(ProblemTypes.ChallengeExpired, "the nonce was used by another request; run the full check");
            case SteadyCheckResult.Changed:
                metrics.UnitAuthenticated(ProofPurpose.SteadyCheck);
                metrics.SteadyCheck(steady: false);
                return TypedResults.Ok(new SteadyCheckResponse(false, options.CheckIntervalSeconds, time.GetUtcNow(),
                    changed ?? "the unit's newest configuration revision is not the one it applied and final, or its row changed since it was read",
                    PowerOnSpreadSeconds: options.PowerOnSpreadSeconds));
            default:
                metrics.UnitAuthenticated(ProofPurpose.SteadyCheck);
                metrics.SteadyCheck(steady: true);
                return TypedResults.Ok(new SteadyCheckResponse(true, options.CheckIntervalSeconds, time.GetUtcNow(), null, Wire(next), options.PowerOnSpreadSeconds));
        }
    }

    /// <summary>
    /// Why the unit is not steady by what the request and its row say, or null: the full exchange is needed whenever the
    /// host has anything to tell or record beyond "ready" (an update or a held way back to offer: <paramref name="program"/>,
    /// as <see cref="Fleet.Rollouts.RolloutService.ProgramForAsync"/> decides it for the version check; new settings,
    /// another state, another inventory or VPN endpoint). <paramref name="pattern"/> is the verified pattern the inventory
    /// matches (null: none). The configuration is compared by the write itself.
    /// </summary>
    internal static string? Compare(SteadyCheckRequest request, SteadyUnitRow unit, string? pattern, UpdateProgramRow? program, string? seenAddress) =>
        pattern is null ? "the unit's software matches no verified install pattern"
            : unit.State != UnitStates.Ready ? $"the host has the unit {unit.State}, not Ready"
            : unit.LastError is not null ? "the host holds an error for the unit: the full exchange looks again (and clears it)"
            : pattern != unit.Pattern ? $"the unit runs {pattern}, the host had {unit.Pattern ?? "none"}"
            : unit.Inventory != JsonSerializer.Serialize(request.Inventory, ProtocolJson.Default.Inventory) ? "the unit's inventory changed"
            : request.Inventory.LastBundle is { } counter && !(unit.LastBundleVersion is { } v && v >= counter.Version) ? "the unit's bundle counter rose"
            : unit.TargetPattern is { } target && target != pattern ? $"the unit's target is {target}"
            : program is not null ? $"update program {program.Id} leads from {pattern}"
            : unit.SettingsRevision > request.SettingsRevision ? $"the host holds settings revision {unit.SettingsRevision}, the unit {request.SettingsRevision}"
            : request.Vpn is { } vpn && (vpn.PublicKey != unit.VpnPublicKey || vpn.ListenPort != unit.VpnListenPort || seenAddress != unit.VpnEndpointAddress) ? "the unit's VPN endpoint changed"
            : null;
}
