using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using System.Text.Json.Serialization;
using Tsunagu.Protocol;

namespace Tsunagu.Server.Security;

/// <summary>A verified token: who (a unit's MAC or an operator's name), for what scope, until when.</summary>
public sealed record TokenClaims(
    [property: JsonPropertyName("sub")] string Subject,
    [property: JsonPropertyName("scp")] string Scope,
    [property: JsonPropertyName("exp")] long ExpiresAtUnix,
    [property: JsonPropertyName("jti")] string Id,
    [property: JsonPropertyName("stm")] string? Stamp = null);

[JsonSerializable(typeof(TokenClaims))]
internal sealed partial class TokenJson : JsonSerializerContext;

/// <summary>
/// Short-lived scoped bearer tokens: base64url(claims) "." base64url(HMAC-SHA256(key, claims)). The key lives in
/// the data directory, so every replica that shares it accepts the same tokens; nothing is kept in memory.
/// </summary>
public sealed class TokenService(byte[] key, TimeProvider time)
{
    public static byte[] LoadOrCreateKey(string directory)
    {
        Directory.CreateDirectory(directory);
        // replicas starting at once on one directory: the first key written is every replica's
        return CreateOnceFile.ReadOrCreate(Path.Combine(directory, "token.key"), () => RandomNumberGenerator.GetBytes(32));
    }

    /// <summary>
    /// Issues a token for <paramref name="lifetime"/>, but never past <paramref name="notAfter"/> (a token minted with
    /// another keeps that one's expiry). <paramref name="stamp"/>: the account's security stamp (operators, subscribers).
    /// </summary>
    public (string Token, DateTimeOffset ExpiresAt) Issue(string subject, string scope, TimeSpan lifetime, string? stamp = null, DateTimeOffset? notAfter = null)
    {
        var expires = time.GetUtcNow() + lifetime;
        if (notAfter is { } limit && limit < expires) { expires = limit; }
        var claims = new TokenClaims(subject, scope, expires.ToUnixTimeSeconds(), UnitCredentials.NewNonce(12), stamp);
        var body = Base64Url.Encode(JsonSerializer.SerializeToUtf8Bytes(claims, TokenJson.Default.TokenClaims));
        return ($"{body}.{Sign(body)}", DateTimeOffset.FromUnixTimeSeconds(claims.ExpiresAtUnix));
    }

    /// <summary>Returns the claims of a genuine, unexpired token, or null with the reason.</summary>
    public TokenClaims? Validate(string? token, out string reason)
    {
        reason = "no bearer token";
        if (string.IsNullOrEmpty(token)) { return null; }
        var dot = token.IndexOf('.');
        if (dot <= 0) { reason = "malformed token"; return null; }
        var body = token[..dot];
        var signature = token[(dot + 1)..];
        if (!CryptographicOperations.FixedTimeEquals(Encoding.ASCII.GetBytes(Sign(body)), Encoding.ASCII.GetBytes(signature)))
        {
            reason = "token signature invalid";
            return null;
        }
        TokenClaims? claims;
        try
        {
            claims = JsonSerializer.Deserialize(Base64Url.Decode(body), TokenJson.Default.TokenClaims);
        }
        catch (Exception e) when (e is JsonException or FormatException)
        {
            reason = "malformed token";
            return null;
        }
        if (claims is null) { reason = "malformed token"; return null; }
        if (DateTimeOffset.FromUnixTimeSeconds(claims.ExpiresAtUnix) <= time.GetUtcNow())
        {
            reason = "token expired";
            return null;
        }
        return claims;
    }

    private string Sign(string body) => Base64Url.Encode(HMACSHA256.HashData(key, Encoding.ASCII.GetBytes(body)));
}
