using System.Net.Security;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;

namespace Tsunagu.Protocol;

/// <summary>
/// The server trust anchor burned into a unit: SHA-256 pins of the server certificates' SubjectPublicKeyInfo.
/// A unit talks only to a server whose certificate (or an issuer in its chain) matches a pin.
/// </summary>
public static class TrustAnchor
{
    public static string PinOf(X509Certificate2 certificate) =>
        Convert.ToBase64String(SHA256.HashData(certificate.PublicKey.ExportSubjectPublicKeyInfo()));

    public static bool Matches(X509Certificate2? certificate, X509Chain? chain, IReadOnlyCollection<string> pins)
    {
        if (certificate is null || pins.Count == 0)
        {
            return false;
        }
        if (pins.Contains(PinOf(certificate)))
        {
            return true;
        }
        return chain is not null && chain.ChainElements.Any(e => pins.Contains(PinOf(e.Certificate)));
    }

    /// <summary>
    /// A TLS client's check of the server (<see cref="SslClientAuthenticationOptions.RemoteCertificateValidationCallback"/>):
    /// its certificate or an issuer in its chain matches one of <paramref name="pins"/> (<see cref="Matches"/>); the
    /// platform's own verdict (names, dates, roots) is not asked, the pins are the trust. No certificate: refused.
    /// </summary>
    public static RemoteCertificateValidationCallback Validator(IReadOnlyCollection<string> pins)
    {
        var pinned = pins.ToArray();
        return (_, certificate, chain, _) => certificate is not null && Matches(
            certificate as X509Certificate2 ?? X509CertificateLoader.LoadCertificate(certificate.GetRawCertData()), chain, pinned);
    }
}
