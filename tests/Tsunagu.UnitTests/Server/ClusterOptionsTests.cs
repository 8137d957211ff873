using Tsunagu.Server;

namespace Tsunagu.UnitTests.Server;

/// <summary>The settings of a replica behind a proxy are refused at start when they are not what they claim to be.</summary>
public class ClusterOptionsTests
{
    [TestCase("/internal/artifacts/")]
    [TestCase("/a/")]
    [TestCase("/files_1.x-y/")]
    public void A_redirect_prefix_that_is_a_plain_path_is_taken(string prefix) =>
        Assert.DoesNotThrow(() => new ServerOptions { ArtifactRedirectPrefix = prefix }.Validate());

    [TestCase("internal/")]          // not absolute
    [TestCase("/internal")]          // the digest would run into the name
    [TestCase("/")]                  // the whole site
    [TestCase("/a/../b/")]           // climbs
    [TestCase("/a b/")]              // a space reaches nginx's header
    [TestCase("/a\r\nX-Evil: 1/")]   // a header injected into the answer
    [TestCase("/a?b=/")]             // a query
    public void A_redirect_prefix_that_is_not_a_plain_absolute_path_stops_the_start(string prefix)
    {
        var e = Assert.Throws<ArgumentException>(() => new ServerOptions { ArtifactRedirectPrefix = prefix }.Validate());
        Assert.That(e!.Message, Does.Contain("ArtifactRedirectPrefix"));
        Assert.That(e.Message, Does.Contain($"was '{prefix.Replace('\r', '?').Replace('\n', '?')}'"), "the value that was refused, control characters shown as '?'");
        Assert.That(e.Message, Does.Not.Contain('\n'));
    }

    [Test]
    public void Trusted_proxies_must_be_addresses_and_the_lease_a_sensible_length()
    {
        Assert.DoesNotThrow(() => new ServerOptions { TrustedProxies = ["127.0.0.1", "::1"], OnceOnlyLeaseSeconds = 3 }.Validate());
        Assert.That(Assert.Throws<ArgumentException>(() => new ServerOptions { TrustedProxies = ["127.0.0.1", "haproxy.local"] }.Validate())!.Message,
            Does.Contain("TrustedProxies").And.Contain("'haproxy.local'"));
        Assert.That(Assert.Throws<ArgumentException>(() => new ServerOptions { TrustedProxies = ["10.0.0.0/8"] }.Validate())!.Message,
            Does.Contain("'10.0.0.0/8'"), "a network is not an address");
        Assert.That(Assert.Throws<ArgumentException>(() => new ServerOptions { OnceOnlyLeaseSeconds = 2 }.Validate())!.Message, Does.Contain("OnceOnlyLeaseSeconds"));
        Assert.That(Assert.Throws<ArgumentException>(() => new ServerOptions { OnceOnlyLeaseSeconds = 3601 }.Validate())!.Message, Does.Contain("OnceOnlyLeaseSeconds"));
    }
}
