using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using Tsunagu.Protocol;

namespace Tsunagu.UnitTests.Protocol;

/// <summary>The pinned trust of every TLS client (units, CLI, benches, tests): a certificate or an issuer in its chain matches a pin.</summary>
public class TrustAnchorTests
{
    private static X509Certificate2 SelfSigned(string name)
    {
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var request = new CertificateRequest($"CN={name}", key, HashAlgorithmName.SHA256);
        return request.CreateSelfSigned(DateTimeOffset.UtcNow.AddDays(-1), DateTimeOffset.UtcNow.AddDays(1));
    }

    [Test]
    public void The_validator_takes_a_certificate_whose_key_is_pinned_and_nothing_else()
    {
        using var server = SelfSigned("server");
        using var other = SelfSigned("other");
        var validator = TrustAnchor.Validator([TrustAnchor.PinOf(other), TrustAnchor.PinOf(server)]);
        Assert.That(validator(this, server, null, System.Net.Security.SslPolicyErrors.RemoteCertificateChainErrors), Is.True, "pinned: the platform's verdict is not asked");
        using var copy = X509CertificateLoader.LoadCertificate(server.RawData);
        Assert.That(validator(this, copy, null, System.Net.Security.SslPolicyErrors.None), Is.True, "the same certificate read again from its bytes");

        var onlyOther = TrustAnchor.Validator([TrustAnchor.PinOf(other)]);
        Assert.That(onlyOther(this, server, null, System.Net.Security.SslPolicyErrors.None), Is.False, "a valid certificate whose key is not pinned");
        Assert.That(validator(this, null, null, System.Net.Security.SslPolicyErrors.RemoteCertificateNotAvailable), Is.False, "no certificate");
        Assert.That(TrustAnchor.Validator([])(this, server, null, System.Net.Security.SslPolicyErrors.None), Is.False, "no pins: nothing is trusted");
    }

    [Test]
    public void The_validator_keeps_the_pins_it_was_given()
    {
        using var server = SelfSigned("server");
        var pins = new List<string> { TrustAnchor.PinOf(server) };
        var validator = TrustAnchor.Validator(pins);
        pins.Clear();
        Assert.That(validator(this, server, null, System.Net.Security.SslPolicyErrors.None), Is.True, "a later change of the caller's list changes nothing");
    }
}
