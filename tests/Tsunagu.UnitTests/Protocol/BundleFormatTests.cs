using System.Security.Cryptography;
using System.Text;
using Tsunagu.Protocol;
using Tsunagu.Protocol.Bundles;

namespace Tsunagu.UnitTests.Protocol;

/// <summary>The bundle format and every check of <see cref="BundleVerifier"/>, on in-memory bundles.</summary>
public class BundleFormatTests
{
    private static readonly DateTimeOffset Now = new(2026, 11, 1, 12, 0, 0, TimeSpan.Zero);
    private ECDsa _key = null!;
    private ECDsa _other = null!;

    [SetUp]
    public void SetUp()
    {
        _key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        _other = ECDsa.Create(ECCurve.NamedCurves.nistP256);
    }

    [TearDown]
    public void TearDown()
    {
        _key.Dispose();
        _other.Dispose();
    }

    public static BundleManifest Template(string id = "p1-to-p2", long version = 2, DateTimeOffset? created = null) => new(
        BundleManifest.CurrentFormat, id, version, ["pattern-1"], "pattern-2",
        new BundleCompatibility(["simulated"], ["r1"], ["os 1"]), 5, created ?? Now.AddDays(-1), (created ?? Now.AddDays(-1)).AddDays(30), [],
        [new BundleStep(StepActions.InstallApplication, "firewall-1.1.0")]);

    public static (BundlePayload, byte[]) App(string name, string version) => (
        new BundlePayload($"{name}-{version}", PayloadKinds.Application, 0, "", name, version),
        BundleFormat.ApplicationTar(new Dictionary<string, byte[]> { ["VERSION"] = Encoding.UTF8.GetBytes($"{name} {version}\n") }));

    private Task<byte[]> BuildAsync(BundleManifest? template = null, params ECDsa[] keys) =>
        BundleFormat.BuildAsync(template ?? Template(), [App("firewall", "1.1.0")], keys.Length == 0 ? [_key] : keys, CancellationToken.None);

    private static BundleTarget Unit(string pattern = "pattern-1", BundleCounter? installed = null, DateTimeOffset? now = null) =>
        new("simulated", "r1", "os 1", pattern, installed, now ?? Now);

    private static async Task<BundleCheckException> RefusedAsync(byte[] bundle, ReleaseKeySet keys, BundleTarget? target)
    {
        using var stream = new MemoryStream(bundle);
        var e = Assert.ThrowsAsync<BundleCheckException>(() => BundleVerifier.VerifyAsync(stream, keys, target, CancellationToken.None));
        await Task.CompletedTask;
        return e!;
    }

    [Test]
    public async Task A_signed_bundle_verifies_and_names_the_key_that_signed_it()
    {
        var bundle = await BuildAsync();
        using var stream = new MemoryStream(bundle);
        var (manifest, keyId) = await BundleVerifier.VerifyAsync(stream, new ReleaseKeySet([_key]), Unit(), CancellationToken.None);
        Assert.That(keyId, Is.EqualTo(ReleaseKeys.KeyId(_key)));
        Assert.That(manifest.Payloads.Single().Application, Is.EqualTo("firewall"));
        stream.Position = 0;
        var header = await BundleFormat.ReadHeaderAsync(stream, CancellationToken.None);
        Assert.That(header.PayloadOffset + manifest.PayloadBytes, Is.EqualTo(bundle.LongLength), "nothing after the last payload");
    }

    [Test]
    public async Task A_tampered_manifest_fails_the_signature_check()
    {
        var bundle = await BuildAsync();
        var at = bundle.AsSpan().IndexOf("\"pattern-2\""u8);
        Assert.That(at, Is.GreaterThan(0));
        bundle[at + 9] = (byte)'9'; // pattern-2 -> pattern-9, same length
        var e = await RefusedAsync(bundle, new ReleaseKeySet([_key]), Unit());
        Assert.That(e.Check, Is.EqualTo(BundleCheck.Signature));
        Assert.That(e.Message, Does.StartWith("signature:").And.Contain("does not match the manifest"));
    }

    [Test]
    public async Task A_tampered_payload_fails_the_payload_digest_check()
    {
        var bundle = await BuildAsync();
        bundle[^600] ^= 0x20;
        var e = await RefusedAsync(bundle, new ReleaseKeySet([_key]), Unit());
        Assert.That(e.Check, Is.EqualTo(BundleCheck.PayloadDigest));
        Assert.That(e.Message, Does.Contain("payload firewall-1.1.0"));
    }

    [Test]
    public async Task A_bundle_signed_by_an_untrusted_key_is_refused_naming_both_keys()
    {
        var bundle = await BuildAsync(null, _other);
        var e = await RefusedAsync(bundle, new ReleaseKeySet([_key]), Unit());
        Assert.That(e.Check, Is.EqualTo(BundleCheck.Signature));
        Assert.That(e.Message, Does.Contain(ReleaseKeys.KeyId(_other)).And.Contain(ReleaseKeys.KeyId(_key)));
    }

    [Test]
    public async Task An_unsigned_bundle_is_refused()
    {
        var bundle = await BundleFormat.BuildAsync(Template(), [App("firewall", "1.1.0")], [], CancellationToken.None);
        var e = await RefusedAsync(bundle, new ReleaseKeySet([_key]), Unit());
        Assert.That(e.Message, Is.EqualTo("signature: the bundle is not signed"));
    }

    [Test]
    public async Task An_expired_bundle_is_refused()
    {
        var bundle = await BuildAsync(Template(created: Now.AddDays(-40)));
        var e = await RefusedAsync(bundle, new ReleaseKeySet([_key]), Unit());
        Assert.That(e.Check, Is.EqualTo(BundleCheck.Expiry));
        Assert.That(e.Message, Does.Contain("expired at"));
    }

    [TestCase("board", BundleCheck.Board)]
    [TestCase("hardware", BundleCheck.Hardware)]
    [TestCase("os", BundleCheck.Os)]
    [TestCase("pattern", BundleCheck.FromPattern)]
    [TestCase("no-pattern", BundleCheck.FromPattern)]
    public async Task A_bundle_for_another_unit_or_pattern_is_refused(string what, BundleCheck expected)
    {
        var bundle = await BuildAsync();
        var target = what switch
        {
            "board" => Unit() with { Board = "rpi4" },
            "hardware" => Unit() with { HardwareVersion = "r2" },
            "os" => Unit() with { OsVersion = "os 2" },
            "pattern" => Unit("pattern-7"),
            _ => Unit() with { CurrentPattern = null },
        };
        var e = await RefusedAsync(bundle, new ReleaseKeySet([_key]), target);
        Assert.That(e.Check, Is.EqualTo(expected));
        Assert.That(e.Message, Does.StartWith(BundleChecks.Name(expected) + ":"));
    }

    [Test]
    public async Task A_version_not_higher_than_the_last_installed_is_refused_but_the_same_bundle_may_be_restored()
    {
        var bundle = await BuildAsync(Template(version: 4));
        var lower = await RefusedAsync(bundle, new ReleaseKeySet([_key]), Unit(installed: new BundleCounter(5, "p2-to-p3")));
        Assert.That(lower.Check, Is.EqualTo(BundleCheck.Version));
        Assert.That(lower.Message, Does.Contain("version 4 is not higher than the last installed version 5 (bundle p2-to-p3)"));
        var equal = await RefusedAsync(bundle, new ReleaseKeySet([_key]), Unit(installed: new BundleCounter(4, "another")));
        Assert.That(equal.Check, Is.EqualTo(BundleCheck.Version));
        using var stream = new MemoryStream(bundle);
        Assert.That(async () => await BundleVerifier.VerifyAsync(stream, new ReleaseKeySet([_key]), Unit(installed: new BundleCounter(4, "p1-to-p2")), CancellationToken.None),
            Throws.Nothing, "re-installing exactly the last committed bundle is a restore, not a rollback");
    }

    [Test]
    public async Task Bytes_after_the_last_payload_and_a_truncated_bundle_are_refused()
    {
        var bundle = await BuildAsync();
        var longer = await RefusedAsync([.. bundle, 0], new ReleaseKeySet([_key]), Unit());
        Assert.That(longer.Check, Is.EqualTo(BundleCheck.Size));
        var shorter = await RefusedAsync(bundle[..^10], new ReleaseKeySet([_key]), Unit());
        Assert.That(shorter.Check, Is.EqualTo(BundleCheck.Size));
        var garbage = await RefusedAsync(Encoding.ASCII.GetBytes("PK\u0003\u0004 not a bundle at all"), new ReleaseKeySet([_key]), Unit());
        Assert.That(garbage.Check, Is.EqualTo(BundleCheck.Format));
    }

    [Test]
    public void Manifest_rules_name_the_field_that_breaks_them()
    {
        var bad = Template() with
        {
            Version = 0,
            Importance = 9,
            FromPatterns = [],
            Steps = [new BundleStep(StepActions.RunScript, "missing", "whenever")],
            Payloads = [new BundlePayload("../x", "zip", -1, "abc")],
        };
        var problems = string.Join("\n", bad.Problems());
        Assert.That(problems, Does.Contain("version: 0").And.Contain("importance: 9").And.Contain("fromPatterns")
            .And.Contain("payloads: name '../x'").And.Contain("kind: 'zip'").And.Contain("steps[0]: payload 'missing'"));
    }

    private static BundleManifest WithSignatures(BundlePayload payload, params BundleStep[] steps) => Template() with
    {
        Payloads = [payload],
        Steps = steps.Length > 0 ? steps : [new BundleStep(StepActions.InstallSignatures, payload.Name)],
    };

    private static readonly string Sha = new('a', 64);

    [Test]
    public void A_signatures_payload_is_a_clamav_database_installed_once()
    {
        Assert.That(WithSignatures(new BundlePayload("daily-7.hdb", PayloadKinds.Signatures, 1000, Sha)).Problems(), Is.Empty);
        Assert.That(WithSignatures(new BundlePayload("main.cvd", PayloadKinds.Signatures, SignatureDatabases.MaxBytes, Sha)).Problems(), Is.Empty);
    }

    [TestCase("daily.conf", 10, null, "a signatures payload is named as its ClamAV database file")]
    [TestCase("Daily.HDB", 10, null, "a signatures payload is named as its ClamAV database file")]
    [TestCase("a..b.ndb", 10, null, "a signatures payload is named as its ClamAV database file")]
    [TestCase("-x.ndb", 10, null, "a signatures payload is named as its ClamAV database file")]
    [TestCase("x.ndb\n", 10, null, "a signatures payload is named as its ClamAV database file")]
    [TestCase("daily.hdb", 0, null, "size: a signature database is 1..")]
    [TestCase("daily.hdb", 536870913, null, "size: a signature database is 1..")]
    [TestCase("daily.hdb", 10, "clamav", "has no application or version")]
    public void A_signatures_payload_breaking_a_rule_is_refused_naming_it(string name, long size, string? application, string problem)
    {
        var problems = WithSignatures(new BundlePayload(name, PayloadKinds.Signatures, size, Sha, application)).Problems();
        Assert.That(problems, Has.Some.Contains(problem), string.Join("\n", problems));
    }

    [Test]
    public void A_signatures_step_is_used_once_without_phase_and_only_on_a_signatures_payload()
    {
        var db = new BundlePayload("daily.hdb", PayloadKinds.Signatures, 10, Sha);
        Assert.That(WithSignatures(db, new BundleStep(StepActions.InstallSignatures, "daily.hdb"), new BundleStep(StepActions.InstallSignatures, "daily.hdb")).Problems(),
            Has.Some.Contains("signatures 'daily.hdb' are installed twice"));
        Assert.That(WithSignatures(db, new BundleStep(StepActions.InstallSignatures, "daily.hdb", ScriptPhases.PreInstall)).Problems(),
            Has.Some.Contains("a signatures step has no phase or timeout"));
        Assert.That(WithSignatures(db, new BundleStep(StepActions.InstallApplication, "daily.hdb")).Problems(),
            Has.Some.Contains("action install-app cannot use payload 'daily.hdb' of kind signatures"));
        var app = App("firewall", "1.1.0").Item1 with { Size = 10, Sha256 = Sha };
        Assert.That((Template() with { Payloads = [app], Steps = [new BundleStep(StepActions.InstallSignatures, app.Name)] }).Problems(),
            Has.Some.Contains("action install-signatures cannot use payload 'firewall-1.1.0' of kind app"));
    }

    [Test]
    public async Task Key_rotation_a_bundle_signed_with_the_old_key_introduces_the_new_one()
    {
        using var newKey = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var rotation = Template() with { IntroducesKeys = [ReleaseKeys.PublicKeyBase64(newKey)], RetiresKeys = [ReleaseKeys.KeyId(_key)] };
        var factory = new ReleaseKeySet([ReleaseKeys.PublicKeyBase64(_key)]);
        using (var stream = new MemoryStream(await BuildAsync(rotation, _key)))
        {
            var (m, _) = await BundleVerifier.VerifyAsync(stream, factory, Unit(), CancellationToken.None);
            Assert.That(m.IntroducesKeys, Has.Count.EqualTo(1));
        }
        // the unit's set after committing it: factory + introduced - retired
        var rotated = new ReleaseKeySet([ReleaseKeys.PublicKeyBase64(_key), ReleaseKeys.PublicKeyBase64(newKey)], [ReleaseKeys.KeyId(_key)]);
        var next = await BuildAsync(Template("p2-to-p3", 3) with { FromPatterns = ["pattern-1"] }, newKey);
        using (var stream = new MemoryStream(next))
        {
            Assert.That((await BundleVerifier.VerifyAsync(stream, rotated, Unit(), CancellationToken.None)).KeyId, Is.EqualTo(ReleaseKeys.KeyId(newKey)));
        }
        var oldSigned = await RefusedAsync(await BuildAsync(Template("p2-to-p3", 3), _key), rotated, Unit());
        Assert.That(oldSigned.Check, Is.EqualTo(BundleCheck.Signature), "the retired key no longer signs anything the unit accepts");
        var transition = await BuildAsync(Template("p2-to-p3", 3), _key, newKey);
        using (var stream = new MemoryStream(transition))
        {
            Assert.That(async () => await BundleVerifier.VerifyAsync(stream, factory, Unit(), CancellationToken.None), Throws.Nothing,
                "a bundle signed by both keys is accepted by units that know only the old one");
        }
    }

    [Test]
    public void A_release_key_that_is_not_P256_is_refused()
    {
        using var p384 = ECDsa.Create(ECCurve.NamedCurves.nistP384);
        Assert.That(ReleaseKeys.TryParse(ReleaseKeys.PublicKeyBase64(p384), out _), Is.False);
        var e = Assert.Throws<ProtocolException>(() => _ = new ReleaseKeySet(["not base64!"]));
        Assert.That(e!.Message, Does.Contain("release key #0"));
    }
}
