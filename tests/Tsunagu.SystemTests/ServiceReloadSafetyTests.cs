using System.Diagnostics;
using Tsunagu.Firmware.Services;
using Tsunagu.Firmware.Storage;
using Tsunagu.Hal;
using Tsunagu.Hal.Linux;
using Tsunagu.IntegrationTests;
using Tsunagu.Protocol;

namespace Tsunagu.SystemTests;

/// <summary>
/// Virus checking in the lab with the real daemons as the unit runs them (nftables redirecting the LAN's HTTP to squid,
/// c-icap, clamd with a test signature database), applied by the unit's own service transaction: a new configuration
/// that clamd, c-icap or squid refuses at start is rolled back to the last good one, and downloads are still checked;
/// virus checking given before any signatures waits for them, and the first signatures start it.
/// </summary>
[NonParallelizable]
public class ServiceReloadSafetyTests
{
    private const string CleanText = "a clean file, nothing to find here";
    private Lab _lab = null!;
    private StateStore _store = null!;
    private ProcessServiceManager? _manager;
    private ServiceApplier? _applier;
    private IRunningCommand? _origin;
    private readonly List<string> _log = [];

    [SetUp]
    public async Task SetUp()
    {
        _lab = await Lab.CreateAsync();
        Directory.CreateDirectory(Path.Combine(_lab.Root, "data"));
        _store = StateStore.Open(Path.Combine(_lab.Root, "data"));
        _log.Clear();
        // the internet's web server: busybox httpd in the internet namespace
        var site = Path.Combine(_lab.Root, "site");
        Directory.CreateDirectory(site);
        await File.WriteAllBytesAsync(Path.Combine(site, "eicar.com"), HostVirusScan.Eicar);
        await File.WriteAllTextAsync(Path.Combine(site, "clean.txt"), CleanText);
        _origin = _lab.StartIn(_lab.Internet, "busybox", "httpd", "-f", "-p", $"{Lab.InternetAddress}:80", "-h", site);
    }

    [TearDown]
    public async Task TearDown()
    {
        _applier?.Dispose();
        if (_manager is not null) { await _manager.DisposeAsync(); }
        if (_origin is not null)
        {
            await _origin.StopAsync(TimeSpan.FromSeconds(5), CancellationToken.None);
            await _origin.DisposeAsync();
        }
        _store.Dispose();
        await _lab.DisposeAsync();
        if (TestContext.CurrentContext.Result.Outcome.Status == NUnit.Framework.Interfaces.TestStatus.Failed)
        {
            TestContext.Out.WriteLine(string.Join("\n", _log));
        }
    }

    private ServiceEnvironment Environment => new(_lab.Board with { VirusScan = HostVirusScan.Board() }, Path.Combine(_lab.Root, "run"),
        Path.Combine(_lab.Root, "data", "services", "state"));

    private static ServiceConfiguration Config(int cacheMegabytes) =>
        RouterServicesTests.Config(cache: true) with { Cache = new CacheConfig(true, cacheMegabytes), VirusScan = new VirusScanConfig(true) };

    /// <summary>What the LAN client gets for http://internet/<paramref name="file"/> (curl, intercepted by the unit): status and body.</summary>
    private async Task<(int Status, string Body, string Error)> FetchAsync(string file)
    {
        var r = await _lab.InAsync(_lab.Client, "curl", "-sS", "--noproxy", "*", "--max-time", "15", "-w", "\n%{http_code}", $"http://{Lab.InternetAddress}/{file}");
        var cut = r.Output.LastIndexOf('\n');
        var status = cut >= 0 && int.TryParse(r.Output[(cut + 1)..], System.Globalization.CultureInfo.InvariantCulture, out var code) ? code : 0;
        return (status, cut >= 0 ? r.Output[..cut] : r.Output, $"curl exit {r.ExitCode}: {r.Error}");
    }

    private string RunLogs() => string.Join("\n", Directory.GetFiles(Path.Combine(_lab.Root, "run"), "*.log").Select(f => $"== {f}\n{File.ReadAllText(f)}"));

    private async Task AssertScanningAsync(string when)
    {
        var clean = await FetchAsync("clean.txt");
        Assert.That((clean.Status, clean.Body), Is.EqualTo((200, CleanText)), $"{when}: a clean download passes: {clean.Error}\n{RunLogs()}");
        var eicar = await FetchAsync("eicar.com");
        Assert.That(eicar.Status, Is.EqualTo(403), $"{when}: the EICAR file is refused: {eicar.Error}");
        Assert.That(eicar.Body, Does.Contain("VIRUS FOUND").And.Contain("Tsunagu.Test.Eicar"), $"{when}: c-icap's page names what was found");
        Assert.That(eicar.Body, Does.Not.Contain("EICAR-STANDARD"), $"{when}: nothing of it reached the client");
    }

    /// <summary>What each daemon is given: clamd an option it does not know (it exits); c-icap an alias to a service that does
    /// not exist (it runs, but scans nothing); squid its proxy port on an address the unit does not have (it runs, unreachable).</summary>
    private static string Refuse(string service, string text) => service switch
    {
        ServiceCatalog.VirusEngine => text + "NoSuchClamdOption yes\n",
        ServiceCatalog.VirusIcap => text.Replace($"ServiceAlias {ServiceRenderer.IcapService} virus_scan", $"ServiceAlias {ServiceRenderer.IcapService} no_such_service", StringComparison.Ordinal),
        _ => text.Replace($"http_port {Lab.LanAddress}:3128\n", "http_port 192.0.2.1:3128\n", StringComparison.Ordinal),
    };

    [TestCase(ServiceCatalog.VirusEngine, ServiceRenderer.Clamd, TestName = "Clamd_refusing_its_new_configuration_is_returned_to_the_last_good_one")]
    [TestCase(ServiceCatalog.VirusIcap, ServiceRenderer.CIcap, TestName = "C_icap_running_without_its_scanning_service_is_returned_to_the_last_good_one")]
    [TestCase(ServiceCatalog.Cache, ServiceRenderer.Squid, TestName = "Squid_not_serving_its_new_configuration_is_returned_to_the_last_good_one")]
    public async Task A_daemon_refusing_its_new_configuration_is_returned_to_the_last_good_one(string service, string file)
    {
        var env = Environment;
        Directory.CreateDirectory(env.SignatureDirectory);
        await File.WriteAllTextAsync(Path.Combine(env.SignatureDirectory, "test.hdb"), HostVirusScan.EicarHashSignature("Tsunagu.Test.Eicar"));
        var refusing = new RefusingManager(_manager = new ProcessServiceManager(_lab.RouterCommands,
            new ServiceManagerOptions { HealthSettle = TimeSpan.FromMilliseconds(500), ConfigureTimeout = TimeSpan.FromSeconds(30) }, log: _log.Add), service, file, Refuse);
        _applier = new ServiceApplier(Path.Combine(_lab.Root, "data"), refusing, env, _store, TimeProvider.System, _log.Add, TimeSpan.Zero);
        await _applier.StartAsync(CancellationToken.None);
        await _applier.ApplyAsync(1, Config(64), CancellationToken.None);
        await _lab.LeaseAsync();
        await AssertScanningAsync("revision 1");

        // revision 2 changes the cache size; the daemon under test is given a configuration it refuses at start
        refusing.Armed = true;
        var clock = Stopwatch.StartNew();
        var e = Assert.ThrowsAsync<ServiceApplyException>(() => _applier.ApplyAsync(2, Config(96), CancellationToken.None));
        TestContext.Out.WriteLine($"refused revision rolled back in {clock.ElapsedMilliseconds} ms: {e!.Message}");
        Assert.That(refusing.Tampered, Is.True, "the refused configuration reached the daemon");
        Assert.That(e.Step, Is.EqualTo("reload"), "reported to the host as a failed reload");
        Assert.That(e.Message, Does.Contain(service));
        Assert.That(_applier.CurrentRevision(), Is.EqualTo(1), "revision 1 is in force again");
        var inForce = File.ReadAllText(Path.Combine(_applier.Root, "current", file));
        Assert.That(inForce, Does.Not.Contain("NoSuchClamdOption").And.Not.Contain("no_such_service").And.Not.Contain("192.0.2.1"), "revision 1's own file is in force");
        Assert.That(_manager.Status().Where(s => s.Name is ServiceCatalog.VirusEngine or ServiceCatalog.VirusIcap or ServiceCatalog.Cache)
            .Select(s => (s.Name, s.State)), Is.EquivalentTo(new[]
            {
                (ServiceCatalog.VirusEngine, ServiceState.Running), (ServiceCatalog.VirusIcap, ServiceState.Running), (ServiceCatalog.Cache, ServiceState.Running),
            }));
        Assert.That(await _manager.CheckHealthAsync(CancellationToken.None), Is.Empty, "every daemon of revision 1 serves again");
        await AssertScanningAsync("after the refused revision 2");
    }

    [Test]
    public async Task Virus_checking_given_before_any_signatures_lets_downloads_through_until_the_first_signatures_start_the_checker()
    {
        var env = Environment;
        var manager = _manager = new ProcessServiceManager(_lab.RouterCommands,
            new ServiceManagerOptions { HealthSettle = TimeSpan.FromMilliseconds(500), ConfigureTimeout = TimeSpan.FromSeconds(30) }, log: _log.Add);
        _applier = new ServiceApplier(Path.Combine(_lab.Root, "data"), manager, env, _store, TimeProvider.System, _log.Add, TimeSpan.Zero);
        await _applier.StartAsync(CancellationToken.None);
        // clamd does not start without a database: the revision applies without the checker, and squid serves
        await _applier.ApplyAsync(1, Config(64), CancellationToken.None);
        await _lab.LeaseAsync();
        Assert.That(manager.Status().Select(s => s.Name), Does.Contain(ServiceCatalog.Cache).And.None.AnyOf(ServiceCatalog.VirusEngine, ServiceCatalog.VirusIcap));
        var clean = await FetchAsync("clean.txt");
        Assert.That((clean.Status, clean.Body), Is.EqualTo((200, CleanText)), $"a download passes while virus checking waits: {clean.Error}\n{RunLogs()}");
        var passing = await FetchAsync("eicar.com");
        Assert.That(passing.Status, Is.EqualTo(200), "nothing checks yet: the file passes, as on a unit without virus checking");

        // the first signatures, as an update installs them (checked alone by clamscan, placed), then the refresh after the update
        var installer = new SignatureInstaller(env, _lab.RouterCommands, TimeProvider.System, _log.Add) { ClamdRuns = _applier.VirusScanRuns };
        await installer.InstallAsync("test.hdb", new MemoryStream(System.Text.Encoding.ASCII.GetBytes(HostVirusScan.EicarHashSignature("Tsunagu.Test.Eicar"))),
            CancellationToken.None);
        Assert.That(_log, Has.Some.Contains("signatures: test.hdb installed").And.Some.Contains("clamd is not running"));
        await _applier.RefreshAsync("update u1 installed", CancellationToken.None);
        Assert.That(manager.Status().Where(s => s.Name is ServiceCatalog.VirusEngine or ServiceCatalog.VirusIcap or ServiceCatalog.Cache)
            .Select(s => (s.Name, s.State)), Is.EquivalentTo(new[]
            {
                (ServiceCatalog.VirusEngine, ServiceState.Running), (ServiceCatalog.VirusIcap, ServiceState.Running), (ServiceCatalog.Cache, ServiceState.Running),
            }), string.Join("\n", _log));
        Assert.That(_applier.CurrentRevision(), Is.EqualTo(1));
        Assert.That(await manager.CheckHealthAsync(CancellationToken.None), Is.Empty);
        await AssertScanningAsync("after the first signatures");
    }

    /// <summary>
    /// The real service manager, except that once <see cref="Armed"/> the next apply rewrites with <paramref name="refuse"/> the
    /// daemon's configuration file of the revision in force (after the checkers passed it) and marks it changed, as a
    /// rendering the daemon cannot run would be. The apply that restores the previous revision goes through untouched.
    /// </summary>
    private sealed class RefusingManager(IServiceManager inner, string service, string file, Func<string, string, string> refuse) : IServiceManager
    {
        public bool Armed { get; set; }
        public bool Tampered { get; private set; }

        public Task ValidateAsync(IReadOnlyList<ServiceSpec> services, CancellationToken ct) => inner.ValidateAsync(services, ct);

        public Task<ServiceChanges> ApplyAsync(IReadOnlyList<ServiceSpec> services, CancellationToken ct)
        {
            if (!Armed) { return inner.ApplyAsync(services, ct); }
            Armed = false;
            var spec = services.Single(s => s.Name == service);
            var path = spec.Daemon!.Arguments.Single(a => a.EndsWith(file, StringComparison.Ordinal));
            var text = File.ReadAllText(path);
            var refused = refuse(service, text);
            Assert.That(refused, Is.Not.EqualTo(text), $"the test's change applies to {file}");
            File.WriteAllText(path, refused);
            Tampered = true;
            return inner.ApplyAsync([.. services.Select(s => s.Name == service ? s with { Digest = s.Digest + "-refused" } : s)], ct);
        }

        public Task<ServiceChanges> RestoreAsync(IReadOnlyList<ServiceSpec> services, CancellationToken ct) => inner.RestoreAsync(services, ct);
        public Task<IReadOnlyList<string>> CheckHealthAsync(CancellationToken ct) => inner.CheckHealthAsync(ct);
        public IReadOnlyList<ServiceStatus> Status() => inner.Status();
        public Task StopAllAsync(CancellationToken ct) => inner.StopAllAsync(ct);
    }
}
