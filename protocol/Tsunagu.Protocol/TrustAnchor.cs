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
}
