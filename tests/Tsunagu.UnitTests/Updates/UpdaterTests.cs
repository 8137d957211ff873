using System.Security.Cryptography;
using System.Text;
using Tsunagu.Firmware.Net;
using Tsunagu.Firmware.Storage;
using Tsunagu.Firmware.Updates;
using Tsunagu.Hal;
using Tsunagu.Hal.Simulated;
using Tsunagu.Protocol;
using Tsunagu.Protocol.Bundles;
using Tsunagu.UnitTests.Protocol;

namespace Tsunagu.UnitTests.Updates;

/// <summary>
/// The unit's updater (<see cref="BundleInstaller"/>) on a real data directory, state store, application store and
/// simulated boot control, fed from an in-memory artifact with range support and fault injection.
/// </summary>
public partial class UpdaterTests
{
    private static readonly Dictionary<string, string> Pattern1 = new() { ["firewall"] = "1.0.0", ["vcp"] = "1.0.0" };
    private string _dir = "";
    private ECDsa _key = null!;
    private StateStore _store = null!;
    private AppStore _apps = null!;
    private SimulatedBootControl _boot = null!;
    private FactoryIdentity _identity = null!;
    private readonly List<string> _log = [];

    [SetUp]
    public void SetUp()
    {
        _dir = Path.Combine(Path.GetTempPath(), "tsunagu-updater-" + Guid.NewGuid().ToString("N"));
        _key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        _identity = new FactoryIdentity(1, "02:54:53:00:00:01", "S1", "r1", "simulated",
            new BootstrapInfo("https://127.0.0.1:1/", new WanAccount("pppoe")), ["pin"], [ReleaseKeys.PublicKeyBase64(_key)], Convert.ToBase64String(new byte[32]));
        OpenData();
        foreach (var (name, version) in Pattern1)
        {
            var tree = Path.Combine(_dir, "prom", name, version);
            Directory.CreateDirectory(tree);
            File.WriteAllText(Path.Combine(tree, "VERSION"), $"{name} {version}\n");
            _apps.Stage(name, version, tree);
            _apps.Switch(name, version);
        }
        _boot = new SimulatedBootControl(Path.Combine(_dir, "boot"));
        _log.Clear();
    }

    [TearDown]
    public void TearDown()
    {
        _store.Dispose();
        _key.Dispose();
        if (Directory.Exists(_dir)) { Directory.Delete(_dir, recursive: true); }
    }

    private void OpenData()
    {
        Directory.CreateDirectory(Path.Combine(_dir, "data"));
        _store = StateStore.Open(Path.Combine(_dir, "data"));
        _apps = new AppStore(Path.Combine(_dir, "data"));
    }

    /// <summary>Power cut: the store is closed and opened again; RAM is gone, `data` stays.</summary>
    private void Restart()
    {
        _store.Dispose();
        OpenData();
        _boot = new SimulatedBootControl(Path.Combine(_dir, "boot"));
    }

    /// <summary>An artifact served from memory with range support; can cut the body short or send extra bytes.</summary>
    private sealed class MemorySource(byte[] content) : IBundleSource
    {
        public List<(long From, long To)> Ranges { get; } = [];
        public int CutAfter { get; set; } = -1;
        public int ExtraBytes { get; set; }

        public Task<(Stream Body, long Start)> OpenAsync(long from, long toExclusive, CancellationToken ct)
        {
            Ranges.Add((from, toExclusive));
            var end = (int)Math.Min(content.Length, toExclusive);
            var slice = content[(int)from..end];
            if (end == content.Length && ExtraBytes > 0) { slice = [.. slice, .. new byte[ExtraBytes]]; }
            if (CutAfter >= 0 && slice.Length > CutAfter) { slice = slice[..CutAfter]; CutAfter = -1; }
            return Task.FromResult<(Stream, long)>((new MemoryStream(slice), from));
        }
    }

    private sealed record Built(byte[] Bytes, UpdateOffer Offer);

    private static async Task<Built> BuildAsync(ECDsa key, long version = 2, IEnumerable<(BundleStep Step, string Script)>? scripts = null,
        string? osVersion = null, string id = "p1-to-p2", byte[]? firewallBlob = null)
    {
        var firewall = firewallBlob is null
            ? BundleFormatTests.App("firewall", "1.1.0")
            : (new BundlePayload("firewall-1.1.0", PayloadKinds.Application, 0, "", "firewall", "1.1.0"),
                BundleFormat.ApplicationTar(new Dictionary<string, byte[]> { ["VERSION"] = Encoding.UTF8.GetBytes("firewall 1.1.0\n"), ["blob"] = firewallBlob }));
        var payloads = new List<(BundlePayload, byte[])> { firewall, BundleFormatTests.App("dns", "2.0.0") };
        var steps = new List<BundleStep>
        {
            new(StepActions.InstallApplication, "firewall-1.1.0"),
            new(StepActions.InstallApplication, "dns-2.0.0"),
        };
        if (osVersion is not null)
        {
            payloads.Add((new BundlePayload("os", PayloadKinds.OsImage, 0, "", null, osVersion), Encoding.UTF8.GetBytes($"kernel+rootfs of {osVersion}")));
            steps.Add(new BundleStep(StepActions.InstallOs, "os"));
        }
        foreach (var (step, script) in scripts ?? [])
        {
            payloads.Add((new BundlePayload(step.Payload, PayloadKinds.Script, 0, ""), Encoding.UTF8.GetBytes(script)));
            steps.Add(step);
        }
        var now = DateTimeOffset.UtcNow;
        var manifest = new BundleManifest(BundleManifest.CurrentFormat, id, version, ["pattern-1"], "pattern-2",
            new BundleCompatibility(["simulated"], ["r1"], ["os 1"]), 5, now.AddHours(-1), now.AddDays(30), [], steps);
        var bytes = await BundleFormat.BuildAsync(manifest, payloads, [key], CancellationToken.None);
        return new Built(bytes, new UpdateOffer(id, "pattern-1", "pattern-2", 5, "/api/v1/host/artifacts/x",
            Convert.ToHexStringLower(SHA256.HashData(bytes)), bytes.LongLength));
    }

    private static (BundleStep, string) Script(string phase, string body, int? timeout = null) =>
        (new BundleStep(StepActions.RunScript, $"{phase}.sh", phase, timeout), "#!/bin/sh\n" + body + "\n");

    private BundleInstaller Installer(IBundleSource source, Func<CancellationToken, Task<HealthReading>>? health = null, Action<string>? checkpoint = null,
        UpdateOptions? options = null, TimeProvider? time = null, Func<Tsunagu.Firmware.Supervision.TimeReading>? trustedNow = null,
        ISignatureDatabases? signatures = null, Tsunagu.Hal.Storage.IDurableFileSystem? files = null) => new(new UpdateEnvironment
        {
            Files = files ?? Tsunagu.Hal.Storage.PosixFileSystem.Instance,
            Signatures = signatures,
            Time = time ?? TimeProvider.System,
            TrustedNow = trustedNow,
            DataRoot = Path.Combine(_dir, "data"),
            Store = _store,
            Apps = _apps,
            Boot = _boot,
            Identity = _identity,
            Source = source,
            Inventory = () => new Inventory("r1", _boot.BootedOsVersion ?? "os 1", new Dictionary<string, string>(_apps.Current()), BundleInstaller.Counter(_store)),
            OsVersion = _boot.BootedOsVersion ?? "os 1",
            HealthProbe = health ?? (_ => Task.FromResult(HealthReading.Healthy)),
            CurrentPattern = "pattern-1",
            Options = options ?? new UpdateOptions { HealthWindow = TimeSpan.FromMilliseconds(300), HealthProbeInterval = TimeSpan.FromMilliseconds(100) },
            Log = _log.Add,
            Checkpoint = checkpoint,
        });

    private PendingUpdate? Journal => _store.Get(StateKeys.PendingUpdate, FirmwareJson.Default.PendingUpdate);

    private static readonly Dictionary<string, string> Pattern2 = new() { ["dns"] = "2.0.0", ["firewall"] = "1.1.0", ["vcp"] = "1.0.0" };

    /// <summary>clamd's databases as files in a directory; records what the updater asked; can refuse an install.</summary>
    private sealed class FakeSignatures(string directory) : ISignatureDatabases
    {
        public List<string> Calls { get; } = [];
        public string? Refuse { get; set; }

        public string? Installed(string name) => File.Exists(Path.Combine(directory, name)) ? Path.Combine(directory, name) : null;

        public async Task InstallAsync(string name, Stream content, long length, CancellationToken ct)
        {
            using var copy = new MemoryStream();
            await content.CopyToAsync(copy, ct);
            Assert.That(copy.Length, Is.EqualTo(length), "the announced length is the payload's");
            Calls.Add($"install {name} {Encoding.ASCII.GetString(copy.ToArray()).Trim()}");
            if (Refuse == name) { throw new Tsunagu.Firmware.Services.SignatureInstallException(name, "clamd failed to reload its database"); }
            Directory.CreateDirectory(directory);
            await File.WriteAllBytesAsync(Path.Combine(directory, name), copy.ToArray(), ct);
        }

        /// <summary>A removal that fails as a command that timed out would (not a refusal of clamd's).</summary>
        public bool RemoveTimesOut { get; set; }

        public Task RemoveAsync(string name, CancellationToken ct)
        {
            Calls.Add($"remove {name}");
            if (RemoveTimesOut) { throw new HalException($"clamscan {name}: timed out", isTransient: true); }
            File.Delete(Path.Combine(directory, name));
            return Task.CompletedTask;
        }
    }

    /// <summary>A bundle that updates the firewall and carries two signature databases: one replacing `main.ndb`, one new.</summary>
    private async Task<Built> SignatureBundleAsync()
    {
        var payloads = new List<(BundlePayload, byte[])>
        {
            BundleFormatTests.App("firewall", "1.1.0"),
            (new BundlePayload("main.ndb", PayloadKinds.Signatures, 0, ""), "New.Main:0:*:4e4557\n"u8.ToArray()),
            (new BundlePayload("daily-7.hdb", PayloadKinds.Signatures, 0, ""), "0123456789abcdef0123456789abcdef:3:New.Daily\n"u8.ToArray()),
        };
        var steps = new List<BundleStep>
        {
            new(StepActions.InstallApplication, "firewall-1.1.0"),
            new(StepActions.InstallSignatures, "main.ndb"),
            new(StepActions.InstallSignatures, "daily-7.hdb"),
        };
        var now = DateTimeOffset.UtcNow;
        var manifest = new BundleManifest(BundleManifest.CurrentFormat, "sigs-7", 7, ["pattern-1"], "pattern-2",
            new BundleCompatibility(["simulated"], ["r1"], ["os 1"]), 5, now.AddHours(-1), now.AddDays(30), [], steps);
        var bytes = await BundleFormat.BuildAsync(manifest, payloads, [_key], CancellationToken.None);
        return new Built(bytes, new UpdateOffer("sigs-7", "pattern-1", "pattern-2", 5, "/api/v1/host/artifacts/x",
            Convert.ToHexStringLower(SHA256.HashData(bytes)), bytes.LongLength));
    }

    /// <summary>The contents of the database the signature tests replace.</summary>
    private const string OldMain = "Old.Main:0:*:4f4c44\n";

    /// <summary>The unit's signature directory holding the old main.ndb a signature bundle replaces.</summary>
    private string SignatureDirectoryWithOldMain()
    {
        var clamav = Path.Combine(_dir, "clamav");
        Directory.CreateDirectory(clamav);
        File.WriteAllText(Path.Combine(clamav, "main.ndb"), OldMain);
        return clamav;
    }

    [Test]
    public async Task Signatures_in_a_bundle_are_installed_through_the_signature_installer_and_committed()
    {
        var clamav = SignatureDirectoryWithOldMain();
        var signatures = new FakeSignatures(clamav);
        var b = await SignatureBundleAsync();
        var result = await Installer(new MemorySource(b.Bytes), signatures: signatures).RunAsync(b.Offer, CancellationToken.None);
        Assert.That(result.Status, Is.EqualTo(InstallStatus.Committed), result.Report?.Error);
        Assert.That(signatures.Calls, Is.EqualTo(new[] { "install main.ndb New.Main:0:*:4e4557", "install daily-7.hdb 0123456789abcdef0123456789abcdef:3:New.Daily" }),
            "each database once, in the bundle's order");
        Assert.That(File.ReadAllText(Path.Combine(clamav, "main.ndb")), Does.Contain("New.Main"));
        Assert.That(_apps.Current()["firewall"], Is.EqualTo("1.1.0"));
        Assert.That(Directory.Exists(Path.Combine(_dir, "data", "tmp", "sigs-7")), Is.False, "work directory (and the kept copies) removed");
    }

    /// <summary>The real file system, noting each sync with the number of signature installs done when it happened.</summary>
    private sealed class SyncOrder(FakeSignatures signatures) : Tsunagu.Hal.Storage.IDurableFileSystem
    {
        private static readonly Tsunagu.Hal.Storage.IDurableFileSystem Real = Tsunagu.Hal.Storage.PosixFileSystem.Instance;
        public List<(string Call, int InstallsBefore)> Calls { get; } = [];
        public bool FileExists(string path) => Real.FileExists(path);
        public Stream OpenFile(string path) => Real.OpenFile(path);
        public void SyncFile(string path) { Calls.Add(($"fsync {path}", signatures.Calls.Count)); Real.SyncFile(path); }
        public void CreateSymbolicLink(string path, string target) => Real.CreateSymbolicLink(path, target);
        public void Rename(string source, string destination) => Real.Rename(source, destination);
        public void DeleteFile(string path) => Real.DeleteFile(path);
        public void SyncDirectory(string path) { Calls.Add(($"fsync-dir {path}", signatures.Calls.Count)); Real.SyncDirectory(path); }
    }

    [Test]
    public async Task The_kept_copy_of_a_replaced_signature_database_is_synced_with_its_directory_before_the_new_one_is_installed()
    {
        var clamav = SignatureDirectoryWithOldMain();
        var signatures = new FakeSignatures(clamav);
        var files = new SyncOrder(signatures);
        var b = await SignatureBundleAsync();
        var kept = new List<string>();
        var result = await Installer(new MemorySource(b.Bytes), signatures: signatures, files: files, checkpoint: point =>
        {
            // what the rollback would install again, as it is when the switch begins
            if (point == "switching") { kept.AddRange(Directory.GetFiles(Path.Combine(_dir, "data", "tmp", "sigs-7"), "*", SearchOption.AllDirectories)); }
        }).RunAsync(b.Offer, CancellationToken.None);
        Assert.That(result.Status, Is.EqualTo(InstallStatus.Committed), result.Report?.Error);
        kept.RemoveAll(f => !f.Contains("signatures-previous", StringComparison.Ordinal));
        var copy = kept.Single(f => f.EndsWith("main.ndb", StringComparison.Ordinal));
        Assert.That(files.Calls, Does.Contain(($"fsync {copy}", 0)), "the copy's bytes are durable before any database is installed\n" + string.Join("\n", files.Calls));
        Assert.That(files.Calls, Does.Contain(($"fsync-dir {Path.GetDirectoryName(copy)}", 0)), "and its name too\n" + string.Join("\n", files.Calls));
        Assert.That(kept, Has.Count.EqualTo(1), "only the replaced database is kept (daily-7.hdb is new)");
    }

    [Test]
    public async Task A_bundle_rolled_back_puts_the_replaced_signatures_back_and_removes_the_added_ones()
    {
        var clamav = SignatureDirectoryWithOldMain();
        var signatures = new FakeSignatures(clamav);
        var b = await SignatureBundleAsync();
        var result = await Installer(new MemorySource(b.Bytes), health: _ => Task.FromResult(HealthReading.Fault("services: clamd not ready")), signatures: signatures)
            .RunAsync(b.Offer, CancellationToken.None);
        Assert.That(result.Status, Is.EqualTo(InstallStatus.Failed));
        Assert.That(signatures.Calls, Is.EqualTo(new[]
        {
            "install main.ndb New.Main:0:*:4e4557", "install daily-7.hdb 0123456789abcdef0123456789abcdef:3:New.Daily",
            "remove daily-7.hdb", "install main.ndb Old.Main:0:*:4f4c44",
        }), "in reverse order: the added one removed, the replaced one installed again");
        Assert.That(Directory.GetFiles(clamav).Select(Path.GetFileName), Is.EqualTo(new[] { "main.ndb" }));
        Assert.That(File.ReadAllText(Path.Combine(clamav, "main.ndb")), Is.EqualTo(OldMain));
        Assert.That(_apps.Current(), Is.EqualTo(Pattern1));
    }

    [Test]
    public async Task A_signature_restore_that_fails_any_way_is_logged_and_the_applications_and_slot_still_go_back()
    {
        var clamav = SignatureDirectoryWithOldMain();
        var signatures = new FakeSignatures(clamav) { RemoveTimesOut = true };
        var b = await SignatureBundleAsync();
        var result = await Installer(new MemorySource(b.Bytes), health: _ => Task.FromResult(HealthReading.Fault("services: clamd not ready")), signatures: signatures)
            .RunAsync(b.Offer, CancellationToken.None);
        Assert.That(result.Status, Is.EqualTo(InstallStatus.Failed), "a failed update, not an exception out of the rollback");
        Assert.That(_apps.Current(), Is.EqualTo(Pattern1), "the applications are back although a database could not be removed");
        Assert.That(signatures.Calls, Does.Contain("install main.ndb Old.Main:0:*:4f4c44"), "the other database is still put back");
        Assert.That(File.ReadAllText(Path.Combine(clamav, "main.ndb")), Is.EqualTo(OldMain));
    }

    [Test]
    public async Task Signatures_clamd_does_not_take_fail_the_update_and_roll_it_back()
    {
        var clamav = SignatureDirectoryWithOldMain();
        var signatures = new FakeSignatures(clamav) { Refuse = "daily-7.hdb" };
        var b = await SignatureBundleAsync();
        var result = await Installer(new MemorySource(b.Bytes), signatures: signatures).RunAsync(b.Offer, CancellationToken.None);
        Assert.That(result.Status, Is.EqualTo(InstallStatus.Failed));
        Assert.That(result.Report!.Error, Does.Contain("daily-7.hdb").And.Contain("clamd failed to reload"));
        Assert.That(File.ReadAllText(Path.Combine(clamav, "main.ndb")), Is.EqualTo(OldMain), "the replaced database is back");
        Assert.That(_apps.Current(), Is.EqualTo(Pattern1));
    }

    [Test]
    public async Task A_unit_without_virus_checking_refuses_signatures_before_anything_changes()
    {
        var b = await SignatureBundleAsync();
        var result = await Installer(new MemorySource(b.Bytes)).RunAsync(b.Offer, CancellationToken.None);
        Assert.That(result.Status, Is.EqualTo(InstallStatus.Failed));
        Assert.That(result.Report!.Error, Does.Contain("runs no virus checking").And.Contain("main.ndb"));
        Assert.That(_apps.Current(), Is.EqualTo(Pattern1), "nothing installed");
    }

    [Test]
    public async Task A_verified_bundle_is_installed_committed_and_reported_with_the_final_inventory()
    {
        var b = await BuildAsync(_key, version: 7);
        var result = await Installer(new MemorySource(b.Bytes)).RunAsync(b.Offer, CancellationToken.None);
        Assert.That(result.Status, Is.EqualTo(InstallStatus.Committed));
        Assert.That(_apps.Current(), Is.EqualTo(Pattern2));
        Assert.That(result.Report!.Inventory.Applications, Is.EqualTo(Pattern2));
        Assert.That(result.Report.Inventory.LastBundle, Is.EqualTo(new BundleCounter(7, "p1-to-p2")));
        Assert.That(Journal!.Phase, Is.EqualTo(PendingUpdate.Installed));
        Assert.That(Directory.Exists(Path.Combine(_dir, "data", "tmp", "p1-to-p2")), Is.False, "work directory removed");
    }

    /// <summary>A wall clock set <paramref name="skew"/> off the true time; the monotonic clock is the system's.</summary>
    private sealed class SkewedClock(TimeSpan skew) : TimeProvider
    {
        public TimeSpan Skew { get; set; } = skew;
        public override DateTimeOffset GetUtcNow() => base.GetUtcNow() + Skew;
    }

    [Test]
    public async Task The_health_window_is_not_ended_by_the_wall_clock_jumping_forward()
    {
        var b = await BuildAsync(_key);
        var unitClock = new SkewedClock(TimeSpan.Zero);
        var probes = 0;
        var result = await Installer(new MemorySource(b.Bytes), health: _ =>
        {
            // the first probe finds the host unreachable, and meanwhile the unit's clock is set a day forward
            if (++probes > 1) { return Task.FromResult(HealthReading.Healthy); }
            unitClock.Skew = TimeSpan.FromDays(1);
            return Task.FromResult(HealthReading.Fault("services: not up yet"));
        }, time: unitClock).RunAsync(b.Offer, CancellationToken.None);
        Assert.That(result.Status, Is.EqualTo(InstallStatus.Committed), result.Report?.Error);
        Assert.That(probes, Is.EqualTo(2));
    }

    [TestCase(365)]
    [TestCase(-365)]
    public async Task Bundle_expiry_is_judged_by_the_hosts_time_whatever_the_units_clock_says(int skewDays)
    {
        // the bundle is valid for 30 days from now (true time); the unit's wall clock is a year off
        var b = await BuildAsync(_key);
        var unitClock = new SkewedClock(TimeSpan.FromDays(skewDays));
        var trusted = new Tsunagu.Firmware.Supervision.TrustedClock(unitClock);
        var sent = unitClock.GetTimestamp();
        trusted.Observe(DateTimeOffset.UtcNow, sent, unitClock.GetTimestamp());
        var result = await Installer(new MemorySource(b.Bytes), time: unitClock, trustedNow: trusted.Now).RunAsync(b.Offer, CancellationToken.None);
        Assert.That(result.Status, Is.EqualTo(InstallStatus.Committed), result.Report?.Error);
        Assert.That(_apps.Current(), Is.EqualTo(Pattern2));
    }

    [Test]
    public async Task A_unit_running_behind_refuses_a_bundle_expired_by_the_hosts_time_and_says_which_time_it_used()
    {
        // true time is 40 days after the bundle was made: it expired 10 days ago; the unit's clock still shows its creation day
        var b = await BuildAsync(_key);
        var unitClock = new SkewedClock(TimeSpan.Zero);
        var trusted = new Tsunagu.Firmware.Supervision.TrustedClock(unitClock);
        var sent = unitClock.GetTimestamp();
        trusted.Observe(DateTimeOffset.UtcNow.AddDays(40), sent, unitClock.GetTimestamp());
        var result = await Installer(new MemorySource(b.Bytes), time: unitClock, trustedNow: trusted.Now).RunAsync(b.Offer, CancellationToken.None);
        Assert.That(result.Status, Is.EqualTo(InstallStatus.Failed));
        Assert.That(result.Report!.Error, Does.StartWith("expiry:").And.Contain("expired at").And.Contain("by the host's time"));
        Assert.That(_apps.Current(), Is.EqualTo(Pattern1), "nothing installed");

        // without a host time the unit's own clock is used, and the message says so
        var own = await Installer(new MemorySource(b.Bytes), time: new SkewedClock(TimeSpan.FromDays(40)),
            trustedNow: new Tsunagu.Firmware.Supervision.TrustedClock(new SkewedClock(TimeSpan.FromDays(40))).Now).RunAsync(b.Offer, CancellationToken.None);
        Assert.That(own.Report!.Error, Does.Contain("by the unit's own clock"));
    }

    [Test]
    public async Task A_download_longer_than_declared_is_refused_and_nothing_is_installed()
    {
        var b = await BuildAsync(_key);
        var result = await Installer(new MemorySource(b.Bytes) { ExtraBytes = 100 }).RunAsync(b.Offer, CancellationToken.None);
        Assert.That(result.Status, Is.EqualTo(InstallStatus.Failed));
        Assert.That(result.Report!.Error, Does.StartWith("size:").And.Contain("more than the declared"));
        Assert.That(_apps.Current(), Is.EqualTo(Pattern1));

        var shortOffer = b.Offer with { Size = b.Bytes.Length - 1 };
        var declared = await Installer(new MemorySource(b.Bytes)).RunAsync(shortOffer, CancellationToken.None);
        Assert.That(declared.Report!.Error, Does.StartWith("size:").And.Contain("the manifest adds up to"));
    }

    [Test]
    public async Task An_interrupted_download_resumes_with_a_range_request_where_it_stopped()
    {
        var b = await BuildAsync(_key);
        var source = new MemorySource(b.Bytes) { CutAfter = 3000 };
        Assert.That(b.Bytes.Length, Is.GreaterThan(6000));
        var first = await Installer(source).RunAsync(b.Offer, CancellationToken.None);
        Assert.That(first.Status, Is.EqualTo(InstallStatus.Transient));
        Assert.That(first.Error!.Message, Does.Contain("download interrupted"));
        var part = new FileInfo(Path.Combine(_dir, "data", "tmp", "p1-to-p2", BundleInstaller.BundleFile));
        var kept = part.Length;
        Assert.That(kept, Is.GreaterThan(0).And.LessThan(b.Bytes.Length));

        Restart();
        var second = await Installer(source).RunAsync(b.Offer, CancellationToken.None);
        Assert.That(second.Status, Is.EqualTo(InstallStatus.Committed));
        Assert.That(source.Ranges.Last(), Is.EqualTo((kept, b.Bytes.LongLength)), "only the missing bytes were asked for");
        Assert.That(_log, Has.Some.Contains($"resuming at byte {kept}"));
        Assert.That(_apps.Current(), Is.EqualTo(Pattern2));
    }

    [Test]
    public async Task A_download_of_several_copy_chunks_cut_mid_chunk_keeps_every_byte_that_arrived_and_resumes_after_it()
    {
        var blob = RandomNumberGenerator.GetBytes(OverlappedCopy.DefaultChunkSize * 2 + 12345);
        var b = await BuildAsync(_key, firewallBlob: blob);
        const int cut = OverlappedCopy.DefaultChunkSize + 4321; // inside the second chunk of the payload request
        var source = new MemorySource(b.Bytes) { CutAfter = cut };
        var first = await Installer(source).RunAsync(b.Offer, CancellationToken.None);
        Assert.That(first.Status, Is.EqualTo(InstallStatus.Transient));
        var cutRequest = source.Ranges.Last();
        var part = new FileInfo(Path.Combine(_dir, "data", "tmp", "p1-to-p2", BundleInstaller.BundleFile));
        Assert.That(part.Length, Is.EqualTo(cutRequest.From + cut), "the unfinished chunk is on disk too");

        Restart();
        var second = await Installer(source).RunAsync(b.Offer, CancellationToken.None);
        Assert.That(second.Status, Is.EqualTo(InstallStatus.Committed));
        Assert.That(source.Ranges.Last(), Is.EqualTo((part.Length, b.Bytes.LongLength)));
        Assert.That(File.ReadAllBytes(Path.Combine(_apps.Root, "firewall", "current", "blob")), Is.EqualTo(blob));
    }

    [Test]
    public async Task A_wrong_key_is_refused_before_any_payload_byte_is_fetched()
    {
        using var other = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var b = await BuildAsync(other);
        var source = new MemorySource(b.Bytes);
        var result = await Installer(source).RunAsync(b.Offer, CancellationToken.None);
        Assert.That(result.Report!.Error, Does.StartWith("signature:"));
        Assert.That(source.Ranges.Max(r => r.To), Is.LessThan(b.Bytes.Length - 4000), "payloads were never downloaded");
        Assert.That(_apps.Current(), Is.EqualTo(Pattern1));
    }

    [Test]
    public async Task A_tampered_payload_is_refused_while_streaming()
    {
        var b = await BuildAsync(_key);
        var tampered = b.Bytes.ToArray();
        tampered[^700] ^= 1;
        var offer = b.Offer with { Sha256 = Convert.ToHexStringLower(SHA256.HashData(tampered)) }; // a compromised host re-hashes it
        var result = await Installer(new MemorySource(tampered)).RunAsync(offer, CancellationToken.None);
        Assert.That(result.Report!.Error, Does.StartWith("payload-digest:"));
        Assert.That(_apps.Current(), Is.EqualTo(Pattern1));
    }

    [Test]
    public async Task A_version_not_higher_is_refused_also_after_data_is_wiped_when_the_host_returns_the_counter()
    {
        var b = await BuildAsync(_key, version: 4);
        BundleInstaller.RaiseCounter(_store, new BundleCounter(5, "p2-to-p3"));
        var result = await Installer(new MemorySource(b.Bytes)).RunAsync(b.Offer, CancellationToken.None);
        Assert.That(result.Report!.Error, Does.StartWith("version:").And.Contain("not higher than the last installed version 5"));

        // data wiped: a fresh store knows nothing, until the host's version check answer raises the counter again
        _store.Dispose();
        File.Delete(Path.Combine(_dir, "data", StateStore.FileName));
        OpenData();
        Assert.That(BundleInstaller.Counter(_store), Is.Null);
        BundleInstaller.RaiseCounter(_store, new BundleCounter(5, "p2-to-p3")); // what VersionCheckState does with LastInstalledBundle
        BundleInstaller.RaiseCounter(_store, new BundleCounter(3, "older"));    // never lowered
        var again = await Installer(new MemorySource(b.Bytes)).RunAsync(b.Offer, CancellationToken.None);
        Assert.That(again.Report!.Error, Does.StartWith("version:"));
        Assert.That(BundleInstaller.Counter(_store), Is.EqualTo(new BundleCounter(5, "p2-to-p3")));
    }

    [Test]
    public async Task A_script_exiting_1_aborts_and_rolls_back_to_the_previous_pattern()
    {
        var marker = Path.Combine(_dir, "rolled-back");
        var b = await BuildAsync(_key, scripts:
        [
            Script(ScriptPhases.PostInstall, "echo 'migration failed: disk full' >&2\nexit 1"),
            Script(ScriptPhases.Rollback, $"touch {marker}"),
        ]);
        var result = await Installer(new MemorySource(b.Bytes)).RunAsync(b.Offer, CancellationToken.None);
        Assert.That(result.Status, Is.EqualTo(InstallStatus.Failed));
        Assert.That(result.Report!.Error, Does.Contain("post-install script post-install.sh exited 1 (abort and roll back)").And.Contain("disk full"));
        Assert.That(_apps.Current(), Is.EqualTo(Pattern1), "back on pattern 1; dns, which the bundle added, is gone");
        Assert.That(result.Report.Inventory.Applications, Is.EqualTo(Pattern1));
        Assert.That(File.Exists(marker), Is.True, "the rollback script ran");
        Assert.That(BundleInstaller.Counter(_store), Is.Null, "nothing committed");
    }

    [Test]
    public async Task A_script_exiting_21_is_retried_later_within_the_bound_then_given_up()
    {
        var b = await BuildAsync(_key, scripts: [Script(ScriptPhases.PreInstall, "echo busy >&2\nexit 21")]);
        var source = new MemorySource(b.Bytes);
        var statuses = new List<InstallStatus>();
        for (var i = 0; i < 3; i++)
        {
            statuses.Add((await Installer(source, options: new UpdateOptions { ScriptRetryLimit = 2 }).RunAsync(b.Offer, CancellationToken.None)).Status);
            Assert.That(_apps.Current(), Is.EqualTo(Pattern1));
        }
        Assert.That(statuses, Is.EqualTo(new[] { InstallStatus.RetryLater, InstallStatus.RetryLater, InstallStatus.Failed }));
        Assert.That(Journal!.Report!.Error, Does.Contain("exited 21 (retry later)").And.Contain("more than the limit of 2"));
        Assert.That(source.Ranges.Count(r => r.To == b.Bytes.Length), Is.EqualTo(1), "the verified bundle was kept between retries");
    }

    [Test]
    public async Task A_script_that_times_out_has_its_whole_process_group_killed()
    {
        var pidFile = Path.Combine(_dir, "child.pid");
        var b = await BuildAsync(_key, scripts:
        [
            Script(ScriptPhases.PreInstall, $"sleep 300 &\necho $! > {pidFile}\necho started >&2\nsleep 300", timeout: 5),
        ]);
        var result = await Installer(new MemorySource(b.Bytes)).RunAsync(b.Offer, CancellationToken.None);
        Assert.That(result.Report!.Error, Does.Contain("timed out after").And.Contain("process group was killed").And.Contain("started"));
        var child = int.Parse(File.ReadAllText(pidFile).Trim());
        var deadline = DateTime.UtcNow.AddSeconds(30);
        while (ProcessAlive(child) && DateTime.UtcNow < deadline) { await Task.Delay(50); }
        Assert.That(ProcessAlive(child), Is.False, $"the script's background child {child} was killed with its group");
        Assert.That(_apps.Current(), Is.EqualTo(Pattern1));
    }

    private static bool ProcessAlive(int pid)
    {
        var stat = $"/proc/{pid}/stat";
        if (!File.Exists(stat)) { return false; }
        var text = File.ReadAllText(stat);
        return text[(text.LastIndexOf(')') + 2)] != 'Z'; // a zombie is dead, only not yet reaped
    }

    [Test]
    public async Task Script_stderr_is_captured_and_capped()
    {
        var b = await BuildAsync(_key, scripts: [Script(ScriptPhases.PreInstall, "head -c 100000 /dev/zero | tr '\\0' 'e' >&2\nexit 1")]);
        var result = await Installer(new MemorySource(b.Bytes), options: new UpdateOptions { StderrCap = 1000 }).RunAsync(b.Offer, CancellationToken.None);
        Assert.That(result.Report!.Error, Does.Contain("[stderr capped]").And.Contain("eeee"));
        Assert.That(result.Report.Error!.Length, Is.LessThan(1000));
    }

    [Test]
    public async Task A_failed_health_check_rolls_back_to_the_previous_pattern()
    {
        var b = await BuildAsync(_key);
        var probes = 0;
        var result = await Installer(new MemorySource(b.Bytes), health: _ => { probes++; return Task.FromResult(HealthReading.Fault("services: revision 3 is applied but services/current points to 2")); })
            .RunAsync(b.Offer, CancellationToken.None);
        Assert.That(result.Status, Is.EqualTo(InstallStatus.Failed));
        Assert.That(result.Report!.Error, Does.StartWith("health check failed within").And.Contain("services: revision 3"));
        Assert.That(probes, Is.GreaterThan(1), "probed again within the window");
        Assert.That(_apps.Current(), Is.EqualTo(Pattern1));
    }

    [Test]
    public async Task A_health_script_that_fails_rolls_back()
    {
        var b = await BuildAsync(_key, scripts: [Script(ScriptPhases.Health, "echo 'dns not answering' >&2\nexit 1")]);
        var result = await Installer(new MemorySource(b.Bytes)).RunAsync(b.Offer, CancellationToken.None);
        Assert.That(result.Report!.Error, Does.Contain("health check failed").And.Contain("dns not answering"));
        Assert.That(_apps.Current(), Is.EqualTo(Pattern1));
    }

    private sealed class PowerCut(string at) : Exception($"power cut at {at}");

    [TestCase("switched firewall")]
    [TestCase("checking")]
    [TestCase("committing")]
    public async Task A_restart_in_the_middle_of_the_install_rolls_back_then_installs_again(string point)
    {
        var b = await BuildAsync(_key);
        var source = new MemorySource(b.Bytes);
        Assert.ThrowsAsync<PowerCut>(() => Installer(source, checkpoint: p => { if (p == point) { throw new PowerCut(p); } }).RunAsync(b.Offer, CancellationToken.None));
        Assert.That(Journal!.InFlight, Is.True, "the phase was persisted before the risky step");

        Restart();
        var result = await Installer(source).RunAsync(b.Offer, CancellationToken.None);
        Assert.That(result.Status, Is.EqualTo(InstallStatus.Committed));
        Assert.That(_log, Has.Some.Contains("restarted in phase").And.Some.Contains("rolling back"));
        Assert.That(_apps.Current(), Is.EqualTo(Pattern2));
        Assert.That(source.Ranges.Count(r => r.To == b.Bytes.Length), Is.EqualTo(1), "not downloaded again");
    }

    [Test]
    public async Task The_install_id_is_in_the_journal_before_the_install_starts_survives_a_restart_and_is_new_for_a_new_attempt()
    {
        var b = await BuildAsync(_key);
        var source = new MemorySource(b.Bytes);
        var healthy = false;
        Task<HealthReading> Health(CancellationToken _) => Task.FromResult(healthy ? HealthReading.Healthy : HealthReading.Fault("vcp does not answer"));
        string? atStart = null;
        Assert.ThrowsAsync<PowerCut>(() => Installer(source, Health, checkpoint: p =>
        {
            atStart ??= Journal?.InstallId ?? "none in the journal";
            if (p == "switched firewall") { throw new PowerCut(p); }
        }).RunAsync(b.Offer, CancellationToken.None));
        Assert.That(InstallIds.IsValid(atStart), Is.True, $"stored in the journal before the first phase ran: {atStart}");
        Assert.That(Journal!.InstallId, Is.EqualTo(atStart));

        // the same attempt after the power cut: rolled back, installed again, the health check fails
        Restart();
        var failed = await Installer(source, Health).RunAsync(b.Offer, CancellationToken.None);
        Assert.That(failed.Status, Is.EqualTo(InstallStatus.Failed));
        Assert.That(failed.Report!.InstallId, Is.EqualTo(atStart), "the attempt reports the id it started with");
        Restart();
        Assert.That(Journal!.Report!.InstallId, Is.EqualTo(atStart), "the report waiting in the journal keeps it: sent again, it names the same install");

        // a new attempt of the same update
        healthy = true;
        var second = await Installer(source, Health).RunAsync(b.Offer, CancellationToken.None);
        Assert.That(second.Status, Is.EqualTo(InstallStatus.Committed));
        Assert.That(Journal!.Attempts, Is.EqualTo(2));
        Assert.That(InstallIds.IsValid(second.Report!.InstallId), Is.True);
        Assert.That(second.Report.InstallId, Is.Not.EqualTo(atStart), "a new attempt draws a new install id");
        Assert.That(Journal!.Report!.InstallId, Is.EqualTo(second.Report.InstallId));
    }

    [Test]
    public async Task A_restart_loop_is_detected_rolled_back_and_stopped()
    {
        var b = await BuildAsync(_key);
        var source = new MemorySource(b.Bytes);
        var cuts = 0;
        void Crash(string p) { if (p == "checking") { cuts++; throw new PowerCut(p); } }
        InstallResult? result = null;
        for (var boot = 0; boot < 10 && result is null; boot++)
        {
            try
            {
                result = await Installer(source, checkpoint: Crash, options: new UpdateOptions { RestartLimit = 3 }).RunAsync(b.Offer, CancellationToken.None);
            }
            catch (PowerCut)
            {
                Restart();
            }
        }
        Assert.That(result!.Status, Is.EqualTo(InstallStatus.Failed));
        Assert.That(result.Report!.Error, Does.StartWith("restart loop"));
        Assert.That(cuts, Is.EqualTo(3));
        Assert.That(_apps.Current(), Is.EqualTo(Pattern1));
        Assert.That(Journal!.Attempts, Is.GreaterThanOrEqualTo(PendingUpdate.AttemptLimit), "the version check will not offer it again");
    }

    [Test]
    public async Task An_OS_update_writes_the_inactive_slot_boots_it_and_commits_after_the_health_check()
    {
        var b = await BuildAsync(_key, osVersion: "os 2");
        var source = new MemorySource(b.Bytes);
        var first = await Installer(source).RunAsync(b.Offer, CancellationToken.None);
        Assert.That(first.Status, Is.EqualTo(InstallStatus.Reboot));
        Assert.That(_boot.Read(BootSlot.A), Is.EqualTo(new SlotState(BootSlot.A, "os 2", false, 3)));
        await _boot.RebootAsync(CancellationToken.None);
        Restart();
        Assert.That(_boot.Booted, Is.EqualTo(BootSlot.A));
        var second = await Installer(source).RunAsync(b.Offer, CancellationToken.None);
        Assert.That(second.Status, Is.EqualTo(InstallStatus.Committed));
        Assert.That(_boot.Read(BootSlot.A).Good, Is.True);
        Assert.That(second.Report!.Inventory.OsVersion, Is.EqualTo("os 2"));
    }

    [Test]
    public async Task An_OS_slot_that_does_not_boot_falls_back_after_its_tries_and_the_update_rolls_back()
    {
        var b = await BuildAsync(_key, osVersion: "os 2");
        var source = new MemorySource(b.Bytes);
        Assert.That((await Installer(source).RunAsync(b.Offer, CancellationToken.None)).Status, Is.EqualTo(InstallStatus.Reboot));
        _boot.CrashingSlots.Add(BootSlot.A);
        await _boot.RebootAsync(CancellationToken.None);
        Assert.That(_boot.Boots, Is.EqualTo(4), "three failed tries, then the fallback boot");
        Assert.That(_boot.Booted, Is.Null, "no good slot yet: the PROM's OS runs");
        Restart();
        var result = await Installer(source).RunAsync(b.Offer, CancellationToken.None);
        Assert.That(result.Status, Is.EqualTo(InstallStatus.Failed));
        Assert.That(result.Report!.Error, Does.Contain("did not boot within 3 tries"));
        Assert.That(_apps.Current(), Is.EqualTo(Pattern1));
        Assert.That(_boot.Read(BootSlot.A).Good, Is.False);
    }
}
