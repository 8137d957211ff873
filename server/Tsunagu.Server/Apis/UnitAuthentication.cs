using System.Globalization;
using Tsunagu.Protocol;
using Tsunagu.Server.Data;
using Tsunagu.Server.Security;

namespace Tsunagu.Server.Apis;

/// <summary>
/// Challenge-response authentication of units, shared by both roles: the server issues a single-use nonce, the
/// unit answers with HMAC(its derived secret, nonce...), the server recomputes the secret from the unit key.
/// </summary>
public sealed class UnitAuthentication(TsunaguStore store, TokenService tokens, UnitKey unitKey, ServerOptions options,
    TimeProvider time, AttemptCounter attempts, ILogger<UnitAuthentication> log)
{
    public IResult Challenge(ChallengeRequest request, string purpose)
    {
        if (!MacAddress.TryNormalize(request.Mac, out var mac))
        {
            return Problems.BadRequest($"mac: '{request.Mac}' is not a MAC address");
        }
        if (attempts.TryAttempt(mac) is { } wait)
        {
            log.LogWarning("unit {Mac}: more than {Limit} authentication attempts this minute", mac, options.AuthAttemptsPerMacPerMinute);
            return TooMany(wait, $"too many authentication attempts for {mac}; retry after the time in Retry-After");
        }
        // Unknown units get a challenge too, so the answer does not reveal which MACs are registered.
        var expires = time.GetUtcNow() + options.ChallengeLifetime;
        var row = new ChallengeRow
        {
            Id = UnitCredentials.NewNonce(12),
            Mac = mac,
            Purpose = purpose,
            Nonce = UnitCredentials.NewNonce(),
            ExpiresAt = expires.ToString("O", CultureInfo.InvariantCulture),
        };
        store.AddChallenge(row);
        return Results.Ok(new ChallengeResponse(row.Id, row.Nonce, expires));
    }

    private static IResult TooMany(TimeSpan wait, string detail) => new RetryAfterResult(wait,
        Problems.Make(StatusCodes.Status429TooManyRequests, ProblemTypes.Prefix + "rate-limited", "Too many attempts", detail));

    public IResult Session(SessionRequest request, string purpose, string scope, TimeSpan lifetime)
    {
        if (!MacAddress.TryNormalize(request.Mac, out var mac))
        {
            return Problems.BadRequest($"mac: '{request.Mac}' is not a MAC address");
        }
        var challenge = store.TakeChallenge(request.ChallengeId);
        if (challenge is null || challenge.Mac != mac || challenge.Purpose != purpose ||
            DateTimeOffset.Parse(challenge.ExpiresAt, CultureInfo.InvariantCulture) <= time.GetUtcNow())
        {
            return Problems.Unauthorized(ProblemTypes.ChallengeExpired, "the challenge is unknown, used, expired or for another unit; ask for a new one");
        }
        var unit = store.GetUnit(mac);
        var secret = UnitCredentials.DeriveUnitSecret(unitKey.Bytes, mac);
        if (unit is null || !UnitCredentials.VerifyProof(secret, purpose, mac, challenge.Id, challenge.Nonce, request.Proof))
        {
            log.LogWarning("unit {Mac} refused: {Reason} ({Purpose})", mac, unit is null ? "not registered" : "wrong proof", purpose);
            if (unit is not null)
            {
                store.Touch(mac, error: $"{purpose} authentication refused: wrong proof");
            }
            store.Audit("system", "unit.refused", mac, unit is null ? "not registered" : "wrong proof");
            return Problems.Unauthorized(ProblemTypes.UnitRefused, "this unit could not be authenticated");
        }
        var (token, expiresAt) = tokens.Issue(mac, scope, lifetime);
        store.Touch(mac, purpose == ProofPurpose.Provisional ? UnitStates.Provisioning : UnitStates.Connected, clearError: true);
        return Results.Ok(new SessionResponse(token, scope, expiresAt, scope == TokenScope.Host ? MacAddress.Compact(mac) : null,
            (long)lifetime.TotalSeconds));
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

/// <summary>Adds a Retry-After header to another result.</summary>
public sealed class RetryAfterResult(TimeSpan after, IResult inner) : IResult
{
    public Task ExecuteAsync(HttpContext httpContext)
    {
        httpContext.Response.Headers.RetryAfter = Math.Max(1, (int)Math.Ceiling(after.TotalSeconds)).ToString(System.Globalization.CultureInfo.InvariantCulture);
        return inner.ExecuteAsync(httpContext);
    }
}
