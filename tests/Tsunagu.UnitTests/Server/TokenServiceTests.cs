using System.Security.Cryptography;
using System.Text;
using Microsoft.Extensions.Time.Testing;
using Tsunagu.Protocol;
using Tsunagu.Server.Security;

namespace Tsunagu.UnitTests.Server;

/// <summary>Bearer tokens (server/Tsunagu.Server/Security/TokenService.cs): issue, validate, expiry, key change, tampering.</summary>
public class TokenServiceTests
{
    private readonly FakeTimeProvider _time = new(new DateTimeOffset(2026, 4, 1, 9, 0, 0, TimeSpan.Zero));

    private TokenService Service(byte[]? key = null) => new(key ?? Key(1), _time);

    private static byte[] Key(byte fill) => Enumerable.Repeat(fill, 32).ToArray();

    [Test]
    public void A_token_carries_its_claims_and_is_valid_until_its_expiry_and_not_a_second_after()
    {
        var tokens = Service();
        var (token, expires) = tokens.Issue("02:00:00:00:00:01", "host", TimeSpan.FromMinutes(10), stamp: "s1");

        Assert.That(expires, Is.EqualTo(_time.GetUtcNow() + TimeSpan.FromMinutes(10)));
        var claims = tokens.Validate(token, out _);
        Assert.That(claims, Is.Not.Null);
        Assert.That((claims!.Subject, claims.Scope, claims.Stamp), Is.EqualTo(("02:00:00:00:00:01", "host", (string?)"s1")));

        _time.Advance(TimeSpan.FromMinutes(10) - TimeSpan.FromSeconds(1));
        Assert.That(tokens.Validate(token, out _), Is.Not.Null);
        _time.Advance(TimeSpan.FromSeconds(1));
        Assert.That(tokens.Validate(token, out var reason), Is.Null);
        Assert.That(reason, Is.EqualTo("token expired"));
    }

    [Test]
    public void A_token_never_outlives_the_limit_it_is_issued_under()
    {
        var tokens = Service();
        var limit = _time.GetUtcNow() + TimeSpan.FromMinutes(3);
        var (token, expires) = tokens.Issue("alice", "operator", TimeSpan.FromHours(1), notAfter: limit);

        Assert.That(expires, Is.EqualTo(limit));
        _time.Advance(TimeSpan.FromMinutes(3));
        Assert.That(tokens.Validate(token, out var reason), Is.Null);
        Assert.That(reason, Is.EqualTo("token expired"));
    }

    [Test]
    public void Two_tokens_for_the_same_subject_differ()
    {
        var tokens = Service();
        var first = tokens.Issue("alice", "operator", TimeSpan.FromMinutes(5)).Token;
        var second = tokens.Issue("alice", "operator", TimeSpan.FromMinutes(5)).Token;
        Assert.That(second, Is.Not.EqualTo(first));
        Assert.That(tokens.Validate(first, out _)!.Id, Is.Not.EqualTo(tokens.Validate(second, out _)!.Id));
    }

    [Test]
    public void A_token_signed_with_another_key_is_refused_and_replicas_sharing_the_key_file_accept_each_others()
    {
        var (token, _) = Service(Key(1)).Issue("alice", "operator", TimeSpan.FromMinutes(5));

        Assert.That(Service(Key(2)).Validate(token, out var reason), Is.Null, "after the key changed");
        Assert.That(reason, Is.EqualTo("token signature invalid"));

        var directory = Directory.CreateTempSubdirectory("tsunagu-token-").FullName;
        try
        {
            var key = TokenService.LoadOrCreateKey(directory);
            Assert.That(key, Has.Length.EqualTo(32));
            Assert.That(TokenService.LoadOrCreateKey(directory), Is.EqualTo(key), "a second replica reads the same key");
            var shared = Service(key).Issue("bob", "operator", TimeSpan.FromMinutes(5)).Token;
            Assert.That(Service(TokenService.LoadOrCreateKey(directory)).Validate(shared, out _)?.Subject, Is.EqualTo("bob"));

            File.Delete(Path.Combine(directory, "token.key"));
            var rotated = TokenService.LoadOrCreateKey(directory);
            Assert.That(rotated, Is.Not.EqualTo(key));
            Assert.That(Service(rotated).Validate(shared, out reason), Is.Null, "a new key file refuses every token of the old one");
            Assert.That(reason, Is.EqualTo("token signature invalid"));
        }
        finally
        {
            Directory.Delete(directory, recursive: true);
        }
    }

    [Test]
    public void A_token_whose_claims_were_changed_is_refused_even_when_they_would_grant_more()
    {
        var tokens = Service();
        var (token, _) = tokens.Issue("alice", "subscriber", TimeSpan.FromMinutes(5));
        var dot = token.IndexOf('.');
        var json = Encoding.UTF8.GetString(Base64Url.Decode(token[..dot]));
        Assert.That(json, Does.Contain("\"subscriber\""));
        var forged = Base64Url.Encode(Encoding.UTF8.GetBytes(json.Replace("\"subscriber\"", "\"operator\"", StringComparison.Ordinal))) + token[dot..];

        Assert.That(tokens.Validate(forged, out var reason), Is.Null);
        Assert.That(reason, Is.EqualTo("token signature invalid"));
    }

    [TestCase(null, "no bearer token")]
    [TestCase("", "no bearer token")]
    [TestCase("no-dot-at-all", "malformed token")]
    [TestCase(".signature", "malformed token")]
    [TestCase("body.not-the-signature", "token signature invalid")]
    public void Malformed_tokens_are_refused_with_their_reason(string? token, string expected)
    {
        Assert.That(Service().Validate(token, out var reason), Is.Null);
        Assert.That(reason, Is.EqualTo(expected));
    }

    [Test]
    public void A_correctly_signed_body_that_is_not_claims_is_refused_as_malformed()
    {
        var key = Key(1);
        var body = Base64Url.Encode(Encoding.UTF8.GetBytes("[1,2,3]"));
        var signature = Base64Url.Encode(HMACSHA256.HashData(key, Encoding.ASCII.GetBytes(body)));

        Assert.That(Service(key).Validate($"{body}.{signature}", out var reason), Is.Null);
        Assert.That(reason, Is.EqualTo("malformed token"));
    }
}
