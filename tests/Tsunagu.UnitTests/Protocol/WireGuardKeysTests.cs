using System.Diagnostics;
using Tsunagu.Firmware.Services;
using Tsunagu.Firmware.Storage;
using Tsunagu.Hal.Simulated;
using Tsunagu.Protocol;
using Tsunagu.UnitTests.Services;

namespace Tsunagu.UnitTests.Protocol;

/// <summary>
/// X25519 against RFC 7748's vectors and wireguard-tools' own `wg pubkey`, and the unit's key pair derived from its
/// factory secret: the same after a wipe of `data`, different per unit.
/// </summary>
public class WireGuardKeysTests
{
    [TestCase("a546e36bf0527c9d3b16154b82465edd62144c0ac1fc5a18506a2244ba449ac4", "e6db6867583030db3594c1a424b15f7c726624ec26b3353b10a903a6d0ab1c4c",
        "c3da55379de9c6908e94ea4df28d084f32eccf03491c71f754b4075577a28552", TestName = "RFC 7748 5.2 vector 1")]
    [TestCase("4b66e9d4d1b4673c5ad22691957d6af5c11b6421e0ea01d42ca4169e7918ba0d", "e5210f12786811d3f4b7959d0538ae2c31dbe7106fc03c3efc4cd549c715a493",
        "95cbde9476e8907d7aade45cb4b873f88b595a68799fa152e6f8f7647aac7957", TestName = "RFC 7748 5.2 vector 2")]
    public void X25519_matches_the_rfc_vectors(string scalar, string u, string expected) =>
        Assert.That(Convert.ToHexStringLower(WireGuardKeys.X25519(Convert.FromHexString(scalar), Convert.FromHexString(u))), Is.EqualTo(expected));

    [Test]
    public void X25519_iterated_as_rfc_7748_section_5_2_gives_its_values_after_1_and_1000_rounds()
    {
        var k = new byte[32];
        k[0] = 9;
        var u = (byte[])k.Clone();
        for (var i = 1; i <= 1000; i++)
        {
            var next = WireGuardKeys.X25519(k, u);
            u = k;
            k = next;
            if (i == 1) { Assert.That(Convert.ToHexStringLower(k), Is.EqualTo("422c8e7a6227d7bca1350b3e2bb7279f7897b87bb6854b783c60e80311ae3079")); }
        }
        Assert.That(Convert.ToHexStringLower(k), Is.EqualTo("684cf59ba83309552800ef566f2f4d3c1c3887c49360e3875f2eb94d99532c51"));
    }

    [Test]
    public void Diffie_hellman_of_rfc_7748_section_6_1_agrees()
    {
        var alice = Convert.FromHexString("77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a");
        var bob = Convert.FromHexString("5dab087e624a8a4b79e17f8b83800ee66f3bb1292618b6fd1c2f8b27ff88e0eb");
        var alicePublic = WireGuardKeys.PublicKey(alice);
        var bobPublic = WireGuardKeys.PublicKey(bob);
        Assert.Multiple(() =>
        {
            Assert.That(Convert.ToHexStringLower(alicePublic), Is.EqualTo("8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a"));
            Assert.That(Convert.ToHexStringLower(bobPublic), Is.EqualTo("de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f"));
            Assert.That(Convert.ToHexStringLower(WireGuardKeys.X25519(alice, bobPublic)), Is.EqualTo("4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742"));
            Assert.That(Convert.ToHexStringLower(WireGuardKeys.X25519(bob, alicePublic)), Is.EqualTo("4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742"));
        });
    }

    [Test]
    public void X25519_reduces_a_non_canonical_u_and_refuses_wrong_lengths()
    {
        // RFC 7748 section 5: u is taken modulo p and its top bit ignored, so p + 9 (and p + 9 with bit 255 set) is the base point
        var scalar = Convert.FromHexString("a546e36bf0527c9d3b16154b82465edd62144c0ac1fc5a18506a2244ba449ac4");
        var nine = new byte[32];
        nine[0] = 9;
        var pPlusNine = Convert.FromHexString("f6ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f");
        var withTopBit = (byte[])pPlusNine.Clone();
        withTopBit[31] |= 0x80;
        var expected = WireGuardKeys.X25519(scalar, nine);
        Assert.Multiple(() =>
        {
            Assert.That(WireGuardKeys.X25519(scalar, pPlusNine), Is.EqualTo(expected), "p + 9 is 9");
            Assert.That(WireGuardKeys.X25519(scalar, withTopBit), Is.EqualTo(expected), "the top bit of u is ignored");
            Assert.That(WireGuardKeys.X25519(scalar, new byte[32]), Is.EqualTo(new byte[32]), "u = 0 (a point of low order) gives 0");
            Assert.Throws<ProtocolException>(() => WireGuardKeys.X25519(new byte[31], nine));
            Assert.Throws<ProtocolException>(() => WireGuardKeys.X25519(scalar, new byte[33]));
            Assert.Throws<ProtocolException>(() => WireGuardKeys.PublicKey(new byte[16]));
            Assert.Throws<ProtocolException>(() => WireGuardKeys.Clamp(new byte[31]));
        });
    }

    [Test]
    public void The_derived_key_is_clamped_the_same_for_the_same_secret_and_different_for_another()
    {
        var secret = UnitCredentials.DeriveUnitSecret(new byte[32], "02:54:53:00:00:01");
        var key = WireGuardKeys.DerivePrivateKey(secret);
        Assert.Multiple(() =>
        {
            Assert.That(key, Has.Length.EqualTo(32));
            Assert.That((key[0] & 7, key[31] & 128, key[31] & 64), Is.EqualTo((0, 0, 64)), "clamped as RFC 7748 requires");
            Assert.That(WireGuardKeys.DerivePrivateKey(secret), Is.EqualTo(key), "deterministic");
            Assert.That(WireGuardKeys.DerivePrivateKey(UnitCredentials.DeriveUnitSecret(new byte[32], "02:54:53:00:00:02")), Is.Not.EqualTo(key));
            Assert.That(key, Is.Not.EqualTo(secret[..32]), "not the secret itself");
            Assert.Throws<ProtocolException>(() => WireGuardKeys.DerivePrivateKey(new byte[8]));
        });
    }

    [Test]
    public async Task Public_keys_match_wg_pubkey_of_wireguard_tools()
    {
        for (var i = 0; i < 8; i++)
        {
            var secret = System.Security.Cryptography.RandomNumberGenerator.GetBytes(32);
            var key = WireGuardKeys.ToText(WireGuardKeys.DerivePrivateKey(secret));
            Assert.That(WireGuardKeys.ToText(WireGuardKeys.PublicKey(Convert.FromBase64String(key))), Is.EqualTo(await WgPubkeyAsync(key)), $"secret {Convert.ToHexString(secret)}");
        }
    }

    /// <summary>`wg pubkey` of a private key (wireguard-tools: APT_PACKAGES in the Makefile).</summary>
    internal static async Task<string> WgPubkeyAsync(string privateKey)
    {
        using var wg = Process.Start(new ProcessStartInfo("wg", "pubkey") { RedirectStandardInput = true, RedirectStandardOutput = true, RedirectStandardError = true })
                       ?? throw new InvalidOperationException("wg did not start");
        await wg.StandardInput.WriteLineAsync(privateKey);
        wg.StandardInput.Close();
        var output = await wg.StandardOutput.ReadToEndAsync();
        var error = await wg.StandardError.ReadToEndAsync();
        await wg.WaitForExitAsync();
        Assert.That(wg.ExitCode, Is.Zero, error);
        return output.Trim();
    }

    [Test]
    public async Task The_unit_writes_the_same_key_after_a_wipe_of_data_and_replaces_a_random_one()
    {
        var secret = UnitCredentials.DeriveUnitSecret(new byte[32], "02:54:53:00:00:01");
        var root = Path.Combine(Path.GetTempPath(), "tsunagu-wg-" + Guid.NewGuid().ToString("N"));
        var log = new List<string>();
        try
        {
            async Task<(string File, UnitVpnReport? Report)> BootAsync(byte[] unitSecret)
            {
                var data = Path.Combine(root, "data");
                Directory.CreateDirectory(data);
                using var store = StateStore.Open(data);
                var environment = ServiceConfigTests.WithHdd with { RunDirectory = Path.Combine(data, "run"), StateDirectory = Path.Combine(data, "state") };
                using var applier = new ServiceApplier(data, new SimulatedServiceManager(), environment, store, TimeProvider.System, log.Add, TimeSpan.Zero)
                {
                    VpnPrivateKey = WireGuardKeys.DerivePrivateKey(unitSecret),
                };
                await applier.StartAsync(CancellationToken.None); // a revision in force is started again, with its key
                if (applier.CurrentRevision() is null)
                {
                    await applier.ApplyAsync(1, ServiceConfigTests.Valid(), CancellationToken.None);
                }
                return (File.ReadAllText(environment.VpnKeyFile), applier.VpnReport());
            }

            var first = await BootAsync(secret);
            Assert.That(first.Report, Is.Not.Null);
            Assert.That(first.Report!.ListenPort, Is.EqualTo(51820));
            Assert.That(first.Report.PublicKey, Is.EqualTo(await WgPubkeyAsync(first.File.Trim())), "the reported key is the public key of the key wg is given");

            Directory.Delete(Path.Combine(root, "data"), recursive: true); // `data` wiped; `factory` (the secret) kept
            var again = await BootAsync(secret);
            Assert.That(again, Is.EqualTo(first), "same key file and same report after the wipe");

            // an older release's random key on `data` is replaced by the derived one
            var random = System.Security.Cryptography.RandomNumberGenerator.GetBytes(32);
            WireGuardKeys.Clamp(random);
            File.WriteAllText(Path.Combine(root, "data", "state", "wireguard.key"), WireGuardKeys.ToText(random) + "\n");
            Assert.That(await BootAsync(secret), Is.EqualTo(first));
            if (!OperatingSystem.IsWindows())
            {
                Assert.That(File.GetUnixFileMode(Path.Combine(root, "data", "state", "wireguard.key")), Is.EqualTo(UnixFileMode.UserRead | UnixFileMode.UserWrite),
                    "the rewritten key file is the unit's alone, whatever mode the replaced file had");
            }

            Directory.Delete(Path.Combine(root, "data"), recursive: true);
            var other = await BootAsync(UnitCredentials.DeriveUnitSecret(new byte[32], "02:54:53:00:00:02"));
            Assert.That(other.Report!.PublicKey, Is.Not.EqualTo(first.Report.PublicKey), "another unit, another key");
            var privateKeys = new[] { first.File.Trim(), other.File.Trim(), WireGuardKeys.ToText(random) };
            Assert.That(log, Is.Not.Empty);
            Assert.That(log.Where(line => privateKeys.Any(line.Contains)), Is.Empty, "no private key is ever logged");
        }
        finally
        {
            if (Directory.Exists(root)) { Directory.Delete(root, recursive: true); }
        }
    }
}
