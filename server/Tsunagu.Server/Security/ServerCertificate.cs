using System.Net;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;

namespace Tsunagu.Server.Security;

/// <summary>
/// The server's TLS certificate, created on first start and kept in the data directory. Units pin the SHA-256
/// of its public key (the trust anchor burned into their factory partition).
/// </summary>
public static class ServerCertificate
{
    public const string PfxFile = "server.pfx";
    public const string PemFile = "server.pem";

    public static X509Certificate2 LoadOrCreate(string directory)
    {
        Directory.CreateDirectory(directory);
        var pfx = Path.Combine(directory, PfxFile);
        if (File.Exists(pfx))
        {
            var existing = X509CertificateLoader.LoadPkcs12FromFile(pfx, password: null);
            if (!File.Exists(Path.Combine(directory, PemFile))) { WritePem(directory, existing); } // a start stopped between the two
            return existing;
        }
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var request = new CertificateRequest("CN=tsunagu-server", key, HashAlgorithmName.SHA256);
        var san = new SubjectAlternativeNameBuilder();
        san.AddIpAddress(IPAddress.Loopback);
        san.AddDnsName("localhost");
        request.CertificateExtensions.Add(san.Build());
        request.CertificateExtensions.Add(new X509BasicConstraintsExtension(false, false, 0, true));
        request.CertificateExtensions.Add(new X509EnhancedKeyUsageExtension([new Oid("1.3.6.1.5.5.7.3.1")], false));
        using var created = request.CreateSelfSigned(DateTimeOffset.UtcNow.AddDays(-1), DateTimeOffset.UtcNow.AddYears(10));
        // replicas starting at once on one directory: the first certificate written is every replica's (units pin it)
        var bytes = CreateOnceFile.Publish(pfx, created.Export(X509ContentType.Pkcs12));
        var certificate = X509CertificateLoader.LoadPkcs12(bytes, password: null);
        WritePem(directory, certificate);
        return certificate;
    }

    /// <summary>The certificate's PEM, what units pin: replaced whole; every replica writes the winner's certificate.</summary>
    private static void WritePem(string directory, X509Certificate2 certificate)
    {
        var pem = Path.Combine(directory, PemFile);
        var temporary = $"{pem}.{Environment.ProcessId}.{Guid.NewGuid():N}.tmp";
        File.WriteAllText(temporary, certificate.ExportCertificatePem() + "\n");
        File.Move(temporary, pem, overwrite: true);
    }
}
