using System.Security.Cryptography;
using Tsunagu.Protocol;
using Tsunagu.Protocol.Bundles;

namespace Tsunagu.Cli.Factory;

/// <summary>What the factory burns for one unit; <paramref name="SingleLink"/>: the operator is the unit's ISP (variant 2, <see cref="BootstrapInfo.SingleLink"/>).</summary>
public sealed record IdentitySpec(string Mac, string Serial, string HardwareVersion, string Board, string InitialServerUrl,
    WanAccount ProvisionalWan, IReadOnlyList<string> ServerPins, IReadOnlyList<string> ReleasePublicKeys, bool SingleLink = false);

/// <summary>
/// Creates factory identities. The unit's secret is derived here from the operator's unit key; only the derived
/// secret goes into the identity, never the key. A PPPoE provisional link given without a password gets the unit's
/// provisioning PPP password, derived the same way under another label (<see cref="UnitCredentials.DeriveAccessPassword"/>),
/// and, without a user name, the MAC as its user name.
/// </summary>
public static class FactoryIdentities
{
    public static FactoryIdentity Create(IdentitySpec spec, ReadOnlySpan<byte> unitKey)
    {
        var mac = MacAddress.Normalize(spec.Mac);
        if (string.IsNullOrWhiteSpace(spec.Serial)) { throw new ArgumentException("serial: required"); }
        if (!Uri.TryCreate(spec.InitialServerUrl, UriKind.Absolute, out var server) || server.Scheme != Uri.UriSchemeHttps)
        {
            throw new ArgumentException($"initial server URL '{spec.InitialServerUrl}' must be an absolute https:// URL");
        }
        if (spec.ServerPins.Count == 0) { throw new ArgumentException("at least one server certificate pin is required"); }
        var secret = UnitCredentials.DeriveUnitSecret(unitKey, mac);
        var wan = spec.ProvisionalWan;
        if (string.Equals(wan.Method?.Trim(), "pppoe", StringComparison.OrdinalIgnoreCase))
        {
            wan = wan with
            {
                Username = wan.Username ?? UnitCredentials.AccessUsername(mac),
                Password = wan.Password ?? UnitCredentials.DeriveAccessPassword(unitKey, mac),
            };
        }
        if (WanAccountGrammar.Problem(wan) is { } problem) { throw new ArgumentException($"provisional WAN account: {problem}"); }
        return new FactoryIdentity(FactoryIdentity.CurrentFormat, mac, spec.Serial, spec.HardwareVersion, spec.Board,
            new BootstrapInfo(spec.InitialServerUrl, wan, spec.SingleLink), spec.ServerPins, spec.ReleasePublicKeys,
            Convert.ToBase64String(secret));
    }

    /// <summary>Loads the release signing key (ECDSA P-256, PKCS#8 PEM) or creates one; returns its public key (SPKI, base64).</summary>
    public static string LoadOrCreateReleaseKey(string path)
    {
        using var key = LoadOrCreateReleaseSigningKey(path);
        return ReleaseKeys.PublicKeyBase64(key);
    }

    /// <summary>Loads the release signing key (ECDSA P-256, PKCS#8 PEM) or creates one (file mode 0600); the caller disposes it.</summary>
    public static ECDsa LoadOrCreateReleaseSigningKey(string path)
    {
        if (File.Exists(path))
        {
            return ReleaseKeys.ParsePrivate(File.ReadAllText(path), path);
        }
        var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        Directory.CreateDirectory(Path.GetDirectoryName(Path.GetFullPath(path))!);
        WritePrivate(path, key.ExportPkcs8PrivateKeyPem());
        return key;
    }

    /// <summary>Writes a private key readable by its owner only.</summary>
    public static void WritePrivate(string path, string pem)
    {
        var options = new FileStreamOptions { Mode = FileMode.CreateNew, Access = FileAccess.Write };
        if (!OperatingSystem.IsWindows()) { options.UnixCreateMode = UnixFileMode.UserRead | UnixFileMode.UserWrite; }
        using var file = new StreamWriter(path, System.Text.Encoding.ASCII, options);
        file.Write(pem);
    }

    /// <summary>A unit key file: 32 random bytes.</summary>
    public static byte[] ReadUnitKey(string path)
    {
        try
        {
            var key = File.ReadAllBytes(path);
            if (key.Length < 16) { throw new ArgumentException($"{path}: a unit key needs at least 16 bytes, the file has {key.Length}"); }
            return key;
        }
        catch (IOException e)
        {
            throw new ArgumentException($"{path}: cannot read the unit key: {e.Message}", e);
        }
    }
}
