using System.Net.Security;
using System.Security.Authentication;
using System.Security.Cryptography.X509Certificates;
using Microsoft.AspNetCore.Server.Kestrel.Https;

namespace Tsunagu.Server.Security;

/// <summary>
/// TLS of the HTTPS port: TLS 1.2 and 1.3 only, and on Linux (OpenSSL) only AEAD cipher suites with forward secrecy:
/// no CBC suite (padding oracles, Lucky13) and no static RSA key exchange. Every response also carries HSTS.
/// </summary>
public static class TlsPolicy
{
    public static readonly TlsCipherSuite[] Suites =
    [
        TlsCipherSuite.TLS_AES_256_GCM_SHA384, TlsCipherSuite.TLS_AES_128_GCM_SHA256, TlsCipherSuite.TLS_CHACHA20_POLY1305_SHA256,
        TlsCipherSuite.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384, TlsCipherSuite.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
        TlsCipherSuite.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
        TlsCipherSuite.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384, TlsCipherSuite.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
        TlsCipherSuite.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
    ];

    /// <summary>One year, as browsers expect for HSTS.</summary>
    public const string StrictTransportSecurity = "max-age=31536000";

    public static HttpsConnectionAdapterOptions Configure(X509Certificate2 certificate)
    {
        var https = new HttpsConnectionAdapterOptions
        {
            ServerCertificate = certificate,
            SslProtocols = SslProtocols.Tls12 | SslProtocols.Tls13,
        };
        if (OperatingSystem.IsLinux() || OperatingSystem.IsMacOS())
        {
            var policy = new CipherSuitesPolicy(Suites);
            https.OnAuthenticate = (_, ssl) => ssl.CipherSuitesPolicy = policy;
        }
        return https;
    }
}
