using System.Security.Cryptography;
using System.Text;
using CsCheck;
using Tsunagu.Server;
using Tsunagu.Server.Metrics;

namespace Tsunagu.UnitTests.Server;

/// <summary>The metrics token (server/Tsunagu.Server/Metrics/MetricsEndpoint.cs) and the labels of the server's own series.</summary>
public class MetricsTests
{
    private const string Token = "0123456789abcdef0123456789abcdef";
    private static readonly byte[] Digest = SHA256.HashData(Encoding.UTF8.GetBytes(Token));

    [Test]
    public void A_metrics_token_must_be_long_and_plain()
    {
        foreach (var bad in new[] { "short", Token[..31], " " + Token, Token + " ", Token + "\n", Token[..16] + "\u0001" + Token[16..], new string('x', 513) })
        {
            Assert.That(() => new ServerOptions { MetricsToken = bad }.Validate(), Throws.ArgumentException.With.Message.Contains("MetricsToken"), bad);
        }
        Assert.That(() => new ServerOptions { MetricsToken = Token }.Validate(), Throws.Nothing);
        Assert.That(() => new ServerOptions().Validate(), Throws.Nothing, "no token: no /metrics, still a valid server");
    }

    [Test]
    public void Only_the_bearer_token_itself_is_accepted()
    {
        Assert.That(MetricsEndpoint.Authorized("Bearer " + Token, Digest), Is.True);
        Assert.That(MetricsEndpoint.Authorized("bearer " + Token, Digest), Is.True, "the scheme is case-insensitive (RFC 9110)");
        Gen.String.Sample(s =>
        {
            if (s.Trim() == Token) { return; }
            Assert.That(MetricsEndpoint.Authorized("Bearer " + s, Digest), Is.False);
            Assert.That(MetricsEndpoint.Authorized(s, Digest), Is.False);
        });
        foreach (var near in new[] { "", "Bearer", "Bearer ", Token, "Basic " + Token, "Bearer " + Token[..^1], "Bearer " + Token + "0", "Bearer " + Token.ToUpperInvariant() })
        {
            Assert.That(MetricsEndpoint.Authorized(near, Digest), Is.False, near);
        }
    }

    private static string Export(ServerMetrics metrics)
    {
        using var stream = new MemoryStream();
        metrics.Registry.CollectAndExportAsTextAsync(stream).GetAwaiter().GetResult();
        return Encoding.UTF8.GetString(stream.ToArray());
    }

    [Test]
    public void Every_named_label_value_starts_at_zero_and_a_client_cannot_add_label_values()
    {
        var metrics = new ServerMetrics();
        var text = Export(metrics);
        Assert.That(text, Does.Contain("tsunagu_unit_refusals_total{reason=\"wrong_proof\"} 0"));
        Assert.That(text, Does.Contain("tsunagu_checkins_total{result=\"up_to_date\"} 0"));
        Assert.That(text, Does.Contain("tsunagu_pushes_total{result=\"undelivered\"} 0"));
        Gen.String[1, 20].Sample(method =>
        {
            metrics.Request("/api/v1/units", method, 200, TimeSpan.FromMilliseconds(3));
        });
        var methods = System.Text.RegularExpressions.Regex.Matches(Export(metrics), "method=\"([^\"]*)\"").Select(m => m.Groups[1].Value).Distinct().ToList();
        Assert.That(methods, Is.SubsetOf(new[] { "GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS", "other" }));
        Assert.That(methods, Does.Contain("other"));
    }

    [Test]
    public void Two_servers_in_one_process_keep_their_own_numbers()
    {
        var a = new ServerMetrics();
        var b = new ServerMetrics();
        a.UnitRefused("host", ServerMetrics.RefusalReasons.WrongProof);
        Assert.That(Export(a), Does.Contain("tsunagu_unit_refusals_total{reason=\"wrong_proof\"} 1"));
        Assert.That(Export(b), Does.Contain("tsunagu_unit_refusals_total{reason=\"wrong_proof\"} 0"));
    }
}
