using System.Globalization;
using Microsoft.AspNetCore.Http.HttpResults;
using Tsunagu.Protocol;
using Tsunagu.Server.Data;
using Tsunagu.Server.Security;

namespace Tsunagu.Server.Apis;

/// <summary>
/// Challenge-response authentication of units, shared by both roles: the server issues a single-use nonce, the
/// unit answers with HMAC(its derived secret, nonce...), the server recomputes the secret from the unit key.
/// </summary>
public sealed class UnitAuthentication(TsunaguStore store, TokenService tokens, UnitKey unitKey, ServerOptions options,
    TimeProvider time, AttemptCounter attempts, RefusalAudit refusals, Push.UnitBrokerLogins brokerLogins, Metrics.ServerMetrics metrics, ILogger<UnitAuthentication> log)
{
    public async Task<Results<Ok<ChallengeResponse>, ProblemHttpResult, RetryAfterResult>> ChallengeAsync(ChallengeRequest request, string purpose, CancellationToken ct = default)
    {
        if (request is null) { return Problems.BadRequest("body: a JSON object with mac is required"); }
        if (!MacAddress.TryNormalize(request.Mac, out var mac))
        {
            return Problems.BadRequest($"mac: '{InputRules.Quote(request.Mac)}' is not a MAC address");
        }
        if (await attempts.TryAttemptAsync(mac, ct) is { } wait)
        {
            log.LogWarning("unit {Mac}: more than {Limit} authentication attempts this minute", mac, options.AuthAttemptsPerMacPerMinute);
            metrics.UnitRefused(purpose, Metrics.ServerMetrics.RefusalReasons.RateLimited);
            return TooMany(wait, $"too many authentication attempts for {mac}; retry after the time in Retry-After");
        }
        // Unknown units get a challenge too, so the answer does not reveal which MACs are registered.
        var expires = time.GetUtcNow() + options.ChallengeLifetime;
        var row = NewChallenge(mac, purpose, expires);
        await store.Units.AddChallengeAsync(row, ct);
        return TypedResults.Ok(new ChallengeResponse(row.Id, row.Nonce, expires));
    }

    /// <summary>A new single-use challenge (not yet stored) of <paramref name="purpose"/> for <paramref name="mac"/>: a host or provisional challenge, or a steady check's nonce.</summary>
    public static ChallengeRow NewChallenge(string mac, string purpose, DateTimeOffset expiresAt) => new()
    {
        Id = UnitCredentials.NewNonce(12),
        Mac = mac,
        Purpose = purpose,
        Nonce = UnitCredentials.NewNonce(),
        ExpiresAt = expiresAt.ToString("O", CultureInfo.InvariantCulture),
    };

    /// <summary>
    /// Checks the proof of <paramref name="mac"/> over a challenge it holds: null when the unit is registered, not
    /// decommissioned and the proof right; otherwise the refusal (logged, audited per MAC and source, counted) as the
    /// 401 to answer. Changes nothing about the unit.
    /// </summary>
    internal async Task<ProblemHttpResult?> RefusalAsync(string mac, bool registered, bool decommissioned, string purpose, ChallengeRow challenge, string proof, HttpContext http)
    {
        if (registered && !decommissioned && UnitCredentials.VerifyProof(UnitCredentials.DeriveUnitSecret(unitKey.Bytes, mac), purpose, mac, challenge.Id, challenge.Nonce, proof))
        {
            return null;
        }
        var reason = !registered ? "not registered" : decommissioned ? "decommissioned" : $"{purpose} authentication refused: wrong proof";
        log.LogWarning("unit {Mac} refused: {Reason}", mac, reason);
        await refusals.RecordAsync(registered ? mac : null, http.Connection.RemoteIpAddress?.ToString() ?? "unknown", reason, http.RequestAborted);
        metrics.UnitRefused(purpose, registered ? Metrics.ServerMetrics.RefusalReasons.WrongProof : Metrics.ServerMetrics.RefusalReasons.NotRegistered);
        return Problems.Unauthorized(ProblemTypes.UnitRefused, "this unit could not be authenticated");
    }

    private static RetryAfterResult TooMany(TimeSpan wait, string detail) => new RetryAfterResult(wait,
        Problems.Make(StatusCodes.Status429TooManyRequests, ProblemTypes.RateLimited, "Too many attempts", detail));

    /// <summary>Longest challenge id and proof accepted (ids are 16 characters, proofs 44: base64 of 32 bytes).</summary>
    public const int MaxChallengeIdLength = 64, MaxProofLength = 128;

    /// <summary>
    /// Checks a proof. The request is validated before the challenge is taken, so a malformed request uses up nothing.
    /// A refused proof changes nothing about the unit (not last seen, not its last error: anyone can send one with the
    /// unit's MAC) and is recorded in the audit log aggregated per MAC and source (<see cref="RefusalAudit"/>).
    /// </summary>
    public async Task<Results<Ok<SessionResponse>, ProblemHttpResult>> Session(SessionRequest request, string purpose, string scope, TimeSpan lifetime, HttpContext http)
    {
        if (request is null) { return Problems.BadRequest("body: a JSON object with mac, challengeId and proof is required"); }
        if (!MacAddress.TryNormalize(request.Mac, out var mac))
        {
            return Problems.BadRequest($"mac: '{InputRules.Quote(request.Mac)}' is not a MAC address");
        }
        if (string.IsNullOrEmpty(request.ChallengeId) || request.ChallengeId.Length > MaxChallengeIdLength)
        {
            return Problems.BadRequest($"challengeId: required, at most {MaxChallengeIdLength} characters");
        }
        if (string.IsNullOrEmpty(request.Proof) || request.Proof.Length > MaxProofLength)
        {
            return Problems.BadRequest($"proof: required, at most {MaxProofLength} characters of base64");
        }
        var challenge = await store.Units.TakeChallengeAsync(request.ChallengeId, purpose, http.RequestAborted);
        if (challenge is null || challenge.Mac != mac || DateTimeOffset.Parse(challenge.ExpiresAt, CultureInfo.InvariantCulture) <= time.GetUtcNow())
        {
            metrics.UnitRefused(purpose, Metrics.ServerMetrics.RefusalReasons.BadChallenge);
            return Problems.Unauthorized(ProblemTypes.ChallengeExpired, "the challenge is unknown, used, expired or for another unit; ask for a new one");
        }
        var unit = await store.Units.GetUnitAsync(mac, http.RequestAborted);
        if (await RefusalAsync(mac, unit is not null, unit?.DecommissionedAt is not null, purpose, challenge, request.Proof, http) is { } refused) { return refused; }
        // marks it seen, and so no longer deletable; a row deleted or decommissioned since it was read above gets no session
        if (!await store.Units.TouchAsync(mac, purpose == ProofPurpose.Provisional ? UnitStates.Provisioning : UnitStates.Connected, clearError: true, ct: http.RequestAborted))
        {
            log.LogWarning("unit {Mac} refused: deleted or decommissioned while it authenticated", mac);
            metrics.UnitRefused(purpose, Metrics.ServerMetrics.RefusalReasons.NotRegistered);
            return Problems.Unauthorized(ProblemTypes.UnitRefused, "this unit could not be authenticated");
        }
        var (token, expiresAt) = tokens.Issue(mac, scope, lifetime);
        metrics.UnitAuthenticated(purpose);
        // a host session carries the unit's short-lived broker password (set on Mosquitto before the answer goes out)
        var push = scope == TokenScope.Host ? await brokerLogins.IssueAsync(mac, http.RequestAborted) : default((string, long)?);
        return TypedResults.Ok(new SessionResponse(token, scope, expiresAt, scope == TokenScope.Host ? MacAddress.Compact(mac) : null,
            (long)lifetime.TotalSeconds, push?.Item1, push?.Item2));
    }
}

/// <summary>The operator's unit key, from which every unit secret is derived. Never leaves the operator's machines.</summary>
public sealed class UnitKey(byte[] bytes)
{
    public const string FileName = "unit.key";
    public byte[] Bytes { get; } = bytes;

    public static UnitKey LoadOrCreate(string directory)
    {
        var path = Path.Combine(directory, FileName);
        if (!File.Exists(path))
        {
            Directory.CreateDirectory(directory);
            File.WriteAllBytes(path + ".tmp", System.Security.Cryptography.RandomNumberGenerator.GetBytes(UnitCredentials.UnitKeyBytes));
            File.Move(path + ".tmp", path);
        }
        return new UnitKey(File.ReadAllBytes(path));
    }
}
