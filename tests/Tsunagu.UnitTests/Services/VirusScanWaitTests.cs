using Tsunagu.Firmware.Services;
using Tsunagu.Firmware.Storage;
using Tsunagu.Hal;
using Tsunagu.Hal.Simulated;
using Tsunagu.Protocol;

namespace Tsunagu.UnitTests.Services;

/// <summary>
/// Virus checking given to a unit before any signatures are installed: clamd cannot start without a database, so the
/// revision applies without clamd and c-icap (squid passes downloads unchecked) and the first signatures start them.
/// </summary>
public class VirusScanWaitTests
{
    private string _root = "";
    private StateStore _store = null!;
    private SimulatedServiceManager _manager = null!;
    private readonly List<string> _log = [];

    [SetUp]
    public void SetUp()
    {
        _root = Path.Combine(Path.GetTempPath(), "tsunagu-virus-wait-" + Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(_root);
        _store = StateStore.Open(_root);
        _manager = new SimulatedServiceManager();
        _log.Clear();
    }

    [TearDown]
    public void TearDown()
    {
        _store.Dispose();
        Directory.Delete(_root, recursive: true);
    }

    private ServiceEnvironment Environment => ServiceConfigTests.WithHdd with
    {
        Board = ServiceConfigTests.WithHdd.Board with { VirusScan = new BoardVirusScan(256, "/usr/lib/x86_64-linux-gnu/c_icap") },
        RunDirectory = Path.Combine(_root, "run"),
        StateDirectory = Path.Combine(_root, "state"),
    };

    private static ServiceConfiguration On => ServiceConfigTests.Valid() with { VirusScan = new VirusScanConfig(true) };

    /// <summary>A simulated service manager whose daemons that never get ready fail within 300 ms (not the 10 s default).</summary>
    private static SimulatedServiceManager QuickManager() =>
        new(options: new ServiceManagerOptions { ConfigureTimeout = TimeSpan.FromMilliseconds(300), HealthSettle = TimeSpan.FromMilliseconds(50) });

    /// <summary>Applies revision 1 (virus checking given) with the current manager, then the unit goes off.</summary>
    private async Task ApplyAndPowerOffAsync()
    {
        using var applier = new ServiceApplier(_root, _manager, Environment, _store, TimeProvider.System, _log.Add, TimeSpan.Zero);
        await applier.StartAsync(CancellationToken.None);
        await applier.ApplyAsync(1, On, CancellationToken.None);
    }

    private string InForce(ServiceApplier applier, string name) => Path.Combine(applier.Root, "current", name);

    private void Database(string name)
    {
        Directory.CreateDirectory(Environment.SignatureDirectory);
        File.WriteAllText(Path.Combine(Environment.SignatureDirectory, name), "44d88612fea8a8f36de82e1278abb02f:68:Test.Eicar\n");
    }

    [Test]
    public void Without_a_database_the_rendering_leaves_the_checker_and_squids_icap_hop_out()
    {
        var env = Environment;
        Assert.Multiple(() =>
        {
            Assert.That(ServiceRenderer.VirusScanWaits(On, env), Is.True);
            Assert.That(ServiceRenderer.VirusScanRuns(On, env), Is.False);
            Assert.That(ServiceRenderer.Render(On, env).Keys, Has.None.AnyOf(ServiceRenderer.Clamd, ServiceRenderer.CIcap));
            Assert.That(ServiceRenderer.Render(On, env)[ServiceRenderer.Squid], Does.Not.Contain("icap"));
        });
        // a file clamd would not read is no database; leftovers of an install are not either
        Directory.CreateDirectory(env.SignatureDirectory);
        File.WriteAllText(Path.Combine(env.SignatureDirectory, "notes.txt"), "x");
        Directory.CreateDirectory(Path.Combine(env.SignatureDirectory, "sub.hdb"));
        Assert.That(ServiceRenderer.VirusScanWaits(On, env), Is.True);
        Database("first.hdb");
        Assert.Multiple(() =>
        {
            Assert.That(ServiceRenderer.VirusScanWaits(On, env), Is.False);
            Assert.That(ServiceRenderer.VirusScanRuns(On, env), Is.True);
            Assert.That(ServiceRenderer.Render(On, env)[ServiceRenderer.Squid], Does.Contain("icap_service avscan respmod_precache bypass=off"));
            Assert.That(ServiceRenderer.VirusScanWaits(ServiceConfigTests.Valid(), Environment with { StateDirectory = Path.Combine(_root, "empty") }), Is.False,
                "not given: nothing waits");
        });
    }

    [Test]
    public async Task A_revision_given_virus_checking_before_any_signatures_applies_without_it_and_the_first_signatures_start_it()
    {
        using var applier = new ServiceApplier(_root, _manager, Environment, _store, TimeProvider.System, _log.Add, TimeSpan.Zero);
        await applier.StartAsync(CancellationToken.None);
        await applier.ApplyAsync(1, On, CancellationToken.None);
        Assert.Multiple(() =>
        {
            Assert.That(_manager.Running, Does.Contain(ServiceCatalog.Cache).And.None.AnyOf(ServiceCatalog.VirusEngine, ServiceCatalog.VirusIcap));
            Assert.That(File.Exists(InForce(applier, ServiceRenderer.Clamd)), Is.False);
            Assert.That(File.ReadAllText(InForce(applier, ServiceRenderer.Squid)), Does.Not.Contain("icap"), "squid does not send downloads to a checker that is not there");
            Assert.That(applier.VirusScanRuns(), Is.False);
            Assert.That(_log, Has.Some.Contains("services: virus checking waits for its first signatures"));
        });

        // an update places the first database: clamd is still not running until the refresh after the update, so a
        // second database of the same update is placed too, not reloaded into a clamd that is not there
        Database("first.hdb");
        Assert.That(applier.VirusScanRuns(), Is.False, "the revision in force runs no clamd before the refresh");
        _manager.Events.Clear();
        await applier.RefreshAsync("update u1 installed", CancellationToken.None);
        Assert.Multiple(() =>
        {
            Assert.That(_manager.Events, Does.Contain($"start {ServiceCatalog.VirusEngine}").And.Contain($"start {ServiceCatalog.VirusIcap}"));
            Assert.That(_manager.Running, Does.Contain(ServiceCatalog.VirusEngine).And.Contain(ServiceCatalog.VirusIcap).And.Contain(ServiceCatalog.Cache));
            Assert.That(File.ReadAllText(InForce(applier, ServiceRenderer.Squid)), Does.Contain("icap_service avscan"));
            Assert.That(File.Exists(InForce(applier, ServiceRenderer.CIcap)), Is.True);
            Assert.That(applier.VirusScanRuns(), Is.True);
            Assert.That(applier.CurrentRevision(), Is.EqualTo(1), "the same revision, rendered again");
            Assert.That(Directory.GetFiles(Path.Combine(applier.Root, "rev-1"), "*.new"), Is.Empty);
            Assert.That(_log, Has.Some.Contains("rendered again (signatures are installed: virus checking starts)"));
        });
        var squidStarts = _manager.Events.Count(e => e.EndsWith($" {ServiceCatalog.Cache}", StringComparison.Ordinal));
        Assert.That(squidStarts, Is.GreaterThanOrEqualTo(1), "squid takes its new configuration");

        // more signatures change nothing the rendering reads: nothing is written or restarted
        Database("second.ndb");
        _manager.Events.Clear();
        await applier.RefreshAsync("update u2 installed", CancellationToken.None);
        Assert.That(_manager.Events, Is.Empty);

        // every database gone (the update that brought them rolled back; the installer does not make clamd reload an empty
        // set): the refresh stops the checker and squid passes downloads again
        foreach (var file in Directory.GetFiles(Environment.SignatureDirectory)) { File.Delete(file); }
        await applier.RefreshAsync("update u1 rolled back", CancellationToken.None);
        Assert.Multiple(() =>
        {
            Assert.That(_manager.Running, Has.None.AnyOf(ServiceCatalog.VirusEngine, ServiceCatalog.VirusIcap));
            Assert.That(File.Exists(InForce(applier, ServiceRenderer.Clamd)), Is.False);
            Assert.That(File.Exists(InForce(applier, ServiceRenderer.CIcap)), Is.False);
            Assert.That(File.ReadAllText(InForce(applier, ServiceRenderer.Squid)), Does.Not.Contain("icap"));
            Assert.That(applier.VirusScanRuns(), Is.False);
        });
    }

    [Test]
    public async Task A_change_of_the_checker_files_that_stopped_half_way_is_finished_at_the_next_refresh()
    {
        using var applier = new ServiceApplier(_root, _manager, Environment, _store, TimeProvider.System, _log.Add, TimeSpan.Zero);
        await applier.StartAsync(CancellationToken.None);
        await applier.ApplyAsync(1, On, CancellationToken.None);
        Database("first.hdb");
        // the checker's start stopped after clamd.conf (an earlier order wrote it first) and before squid.conf and c-icap.conf
        var rendered = ServiceRenderer.Render(On, Environment);
        File.WriteAllText(InForce(applier, ServiceRenderer.Clamd), rendered[ServiceRenderer.Clamd]);
        Assert.That(File.ReadAllText(InForce(applier, ServiceRenderer.Squid)), Does.Not.Contain("icap"), "precondition: squid.conf of the waiting revision");
        await applier.RefreshAsync("update u1 installed", CancellationToken.None);
        Assert.Multiple(() =>
        {
            Assert.That(File.ReadAllText(InForce(applier, ServiceRenderer.Squid)), Is.EqualTo(rendered[ServiceRenderer.Squid]), "squid.conf finished");
            Assert.That(File.ReadAllText(InForce(applier, ServiceRenderer.CIcap)), Is.EqualTo(rendered[ServiceRenderer.CIcap]), "c-icap.conf finished");
            Assert.That(_manager.Running, Does.Contain(ServiceCatalog.VirusEngine).And.Contain(ServiceCatalog.VirusIcap));
        });

        // and the way back stopped after squid.conf: c-icap.conf and clamd.conf are deleted at the next refresh
        File.Delete(Path.Combine(Environment.SignatureDirectory, "first.hdb"));
        var waiting = ServiceRenderer.Render(On, Environment);
        File.WriteAllText(InForce(applier, ServiceRenderer.Squid), waiting[ServiceRenderer.Squid]);
        await applier.RefreshAsync("update u1 rolled back", CancellationToken.None);
        Assert.Multiple(() =>
        {
            Assert.That(File.Exists(InForce(applier, ServiceRenderer.Clamd)) || File.Exists(InForce(applier, ServiceRenderer.CIcap)), Is.False);
            Assert.That(_manager.Running, Has.None.AnyOf(ServiceCatalog.VirusEngine, ServiceCatalog.VirusIcap));
        });
    }

    [Test]
    public void Squids_set_up_prepares_the_cache_store_its_file_names_and_discards_the_other()
    {
        Database("first.hdb");
        var env = Environment;
        var checking = ServiceRenderer.Render(On, env);
        var plain = ServiceRenderer.Render(On, env with { StateDirectory = Path.Combine(_root, "no-signatures") });
        Assert.That((ServiceRenderer.StoresChecked(checking[ServiceRenderer.Squid], env), ServiceRenderer.StoresChecked(plain[ServiceRenderer.Squid], env)), Is.EqualTo((true, false)));
        Assert.That(checking[ServiceRenderer.Squid], Does.Contain($"\ncache_dir ufs {env.CheckedCacheDirectory} "));
        Assert.That(plain[ServiceRenderer.Squid], Does.Contain($"\ncache_dir ufs {env.CacheDirectory} "));
        // a revision whose squid.conf does not check yet (its checker files half written) prepares the plain store
        var mixed = new Dictionary<string, string>(checking) { [ServiceRenderer.Squid] = plain[ServiceRenderer.Squid] };
        string[] Setup(IReadOnlyDictionary<string, string> files) =>
            ServiceCatalog.Build(On, env, "/x", files).Single(s => s.Name == ServiceCatalog.Cache).Setup.Select(c => string.Join(' ', c.Arguments.Prepend(c.Program))).ToArray();
        Assert.That(Setup(checking), Does.Contain($"mkdir -p {env.CheckedCacheDirectory}").And.Some.StartsWith("sh -c").And.Some.EndsWith($"discard-cache {env.CacheDirectory}"));
        Assert.That(Setup(mixed), Does.Contain($"mkdir -p {env.CacheDirectory}").And.Some.EndsWith($"discard-cache {env.CheckedCacheDirectory}"));
    }

    [Test]
    public async Task Discarding_a_cache_store_renames_it_at_once_and_deletes_it_and_earlier_discarded_ones_in_the_background()
    {
        var hdd = Path.Combine(_root, "hdd");
        var store = Path.Combine(hdd, "squid");
        Directory.CreateDirectory(Path.Combine(store, "00", "0A"));
        File.WriteAllText(Path.Combine(store, "00", "0A", "00000A1B"), "object");
        Directory.CreateDirectory(Path.Combine(hdd, "squid.discarded.17")); // a deletion a power cut stopped
        Directory.CreateDirectory(Path.Combine(hdd, "squid-checked"));
        var discard = ServiceCatalog.DiscardCache(store);
        var result = await new Tsunagu.Hal.Linux.ProcessCommandRunner().RunAsync(discard, null, CancellationToken.None);
        Assert.That(result.ExitCode, Is.Zero, result.Error);
        Assert.That(Directory.Exists(store), Is.False, "renamed before the command returns");
        var deadline = DateTime.UtcNow.AddSeconds(30);
        while (Directory.GetDirectories(hdd, "squid.discarded.*").Length > 0 && DateTime.UtcNow < deadline) { await Task.Delay(50); }
        Assert.That(Directory.GetDirectories(hdd).Select(Path.GetFileName), Is.EqualTo(new[] { "squid-checked" }), "every discarded store deleted, the other store untouched");
        // a store that is not there: nothing to do
        result = await new Tsunagu.Hal.Linux.ProcessCommandRunner().RunAsync(discard, null, CancellationToken.None);
        Assert.That(result.ExitCode, Is.Zero, result.Error);
    }

    [Test]
    public async Task A_checker_that_does_not_start_on_the_first_signatures_goes_back_to_waiting_until_other_signatures_come()
    {
        // c-icap never ready (a board whose modules directory is wrong, say): the start of the checker fails after its time limit
        _manager = QuickManager();
        using var applier = new ServiceApplier(_root, _manager, Environment, _store, TimeProvider.System, _log.Add, TimeSpan.Zero);
        await applier.StartAsync(CancellationToken.None);
        await applier.ApplyAsync(1, On, CancellationToken.None);
        Database("first.hdb");
        _manager.Processes.NeverReady.Add(ServiceCatalog.VirusIcap);
        await applier.RefreshAsync("update u1 installed", CancellationToken.None);
        Assert.Multiple(() =>
        {
            Assert.That(_log, Has.Some.Contains("services: virus checking did not start on the signatures installed (update u1 installed): c-icap"));
            Assert.That(_manager.Running, Does.Contain(ServiceCatalog.Cache).And.None.AnyOf(ServiceCatalog.VirusEngine, ServiceCatalog.VirusIcap),
                "back to waiting: nothing half-started stays");
            Assert.That(File.ReadAllText(InForce(applier, ServiceRenderer.Squid)), Does.Not.Contain("icap"), "squid does not send downloads to a checker that is not there");
            Assert.That(File.Exists(InForce(applier, ServiceRenderer.Clamd)) || File.Exists(InForce(applier, ServiceRenderer.CIcap)), Is.False);
            Assert.That(applier.VirusScanRuns(), Is.False, "a later install places its database without a reload");
            Assert.That(File.ReadAllText(Environment.RefusedSignaturesFile).Trim(), Is.EqualTo(Environment.SignatureSet()), "the set is remembered");
        });

        // the same set does not start it again: not at the next refresh, not after a restart
        _manager.Events.Clear();
        await applier.RefreshAsync("update u2 installed", CancellationToken.None);
        Assert.That(_manager.Events, Has.None.StartsWith("start "));
        applier.Dispose();
        var booted = new SimulatedServiceManager();
        using (var again = new ServiceApplier(_root, booted, Environment, _store, TimeProvider.System, _log.Add, TimeSpan.Zero))
        {
            await again.StartAsync(CancellationToken.None);
            Assert.That(booted.Running, Does.Contain(ServiceCatalog.Cache).And.None.AnyOf(ServiceCatalog.VirusEngine, ServiceCatalog.VirusIcap));
        }

        // another set (a new database) tries again, and starts
        _manager = booted;
        using var third = new ServiceApplier(_root, booted, Environment, _store, TimeProvider.System, _log.Add, TimeSpan.Zero);
        await third.StartAsync(CancellationToken.None);
        Database("second.ndb");
        await third.RefreshAsync("update u3 installed", CancellationToken.None);
        Assert.That(booted.Running, Does.Contain(ServiceCatalog.VirusEngine).And.Contain(ServiceCatalog.VirusIcap));
        Assert.That(File.ReadAllText(InForce(third, ServiceRenderer.Squid)), Does.Contain("icap_service avscan"));
    }

    [Test]
    public async Task A_restart_after_the_first_signatures_were_placed_starts_the_checker()
    {
        await ApplyAndPowerOffAsync();
        // the update placed the database and the unit lost power before the refresh
        Database("first.hdb");
        _manager = new SimulatedServiceManager();
        using var booted = new ServiceApplier(_root, _manager, Environment, _store, TimeProvider.System, _log.Add, TimeSpan.Zero);
        await booted.StartAsync(CancellationToken.None);
        Assert.That(_manager.Running, Does.Contain(ServiceCatalog.VirusEngine).And.Contain(ServiceCatalog.VirusIcap));
        Assert.That(File.ReadAllText(Path.Combine(booted.Root, "current", ServiceRenderer.Squid)), Does.Contain("icap_service avscan"));
    }

    [Test]
    public async Task A_checker_that_does_not_start_at_boot_on_signatures_placed_before_a_restart_goes_back_to_waiting()
    {
        await ApplyAndPowerOffAsync();
        Database("first.hdb");
        _manager = QuickManager();
        _manager.Processes.NeverReady.Add(ServiceCatalog.VirusIcap);
        using var booted = new ServiceApplier(_root, _manager, Environment, _store, TimeProvider.System, _log.Add, TimeSpan.Zero);
        Assert.ThrowsAsync<ServiceException>(() => booted.StartAsync(CancellationToken.None), "the boot hears that c-icap did not start");
        Assert.Multiple(() =>
        {
            Assert.That(_log, Has.Some.Contains("virus checking did not start on the signatures installed (start at boot)"));
            Assert.That(_manager.Running, Does.Contain(ServiceCatalog.Cache).And.None.AnyOf(ServiceCatalog.VirusEngine, ServiceCatalog.VirusIcap));
            Assert.That(File.ReadAllText(InForce(booted, ServiceRenderer.Squid)), Does.Not.Contain("icap"));
            Assert.That(Environment.SignaturesUsable, Is.False);
        });
    }

    [Test]
    public async Task A_failure_that_is_not_the_checkers_does_not_refuse_the_signatures_and_a_start_it_stopped_is_judged_at_the_next_boot()
    {
        _manager = QuickManager();
        using (var applier = new ServiceApplier(_root, _manager, Environment, _store, TimeProvider.System, _log.Add, TimeSpan.Zero))
        {
            await applier.StartAsync(CancellationToken.None);
            await applier.ApplyAsync(1, On, CancellationToken.None);
            Database("first.hdb");
            // squid does not come up again (its HDD, say): the checker started, squid's failure is not the signatures'
            _manager.Processes.NeverReady.Add(ServiceCatalog.Cache);
            await applier.RefreshAsync("update u1 installed", CancellationToken.None);
            Assert.Multiple(() =>
            {
                Assert.That(File.Exists(Environment.RefusedSignaturesFile), Is.False, "the set is not refused for squid's failure");
                Assert.That(_log, Has.Some.Contains("refreshing revision 1 (update u1 installed) failed: squid"));
                Assert.That(File.Exists(Environment.StartedSignaturesFile), Is.False, "nor taken as started: the refresh did not finish");
                Assert.That(applier.VirusScanRuns(), Is.True);
            });
        }

        // the power goes; at the next boot c-icap does not serve on this set: the start the failure stopped is judged now
        // (the revision's files already had the checker), and the unit goes back to waiting
        _manager = QuickManager();
        _manager.Processes.NeverReady.Add(ServiceCatalog.VirusIcap);
        using var booted = new ServiceApplier(_root, _manager, Environment, _store, TimeProvider.System, _log.Add, TimeSpan.Zero);
        Assert.ThrowsAsync<ServiceException>(() => booted.StartAsync(CancellationToken.None));
        Assert.Multiple(() =>
        {
            Assert.That(_log, Has.Some.Contains("virus checking did not start on the signatures installed (start at boot): c-icap"));
            Assert.That(_manager.Running, Does.Contain(ServiceCatalog.Cache).And.None.AnyOf(ServiceCatalog.VirusEngine, ServiceCatalog.VirusIcap));
            Assert.That(File.ReadAllText(InForce(booted, ServiceRenderer.Squid)), Does.Not.Contain("icap"), "squid does not send downloads to a checker that is not there");
        });
    }

    [Test]
    public async Task A_boot_where_another_service_fails_keeps_a_checker_that_runs_and_takes_its_set_as_started()
    {
        await ApplyAndPowerOffAsync();
        Database("first.hdb");
        // the first boot on the placed signatures, where the VPN does not come up
        _manager = QuickManager();
        _manager.Processes.RefuseConfigure.Add(ServiceCatalog.Vpn);
        using var booted = new ServiceApplier(_root, _manager, Environment, _store, TimeProvider.System, _log.Add, TimeSpan.Zero);
        Assert.ThrowsAsync<ServiceException>(() => booted.StartAsync(CancellationToken.None));
        Assert.Multiple(() =>
        {
            Assert.That(_manager.Running, Does.Contain(ServiceCatalog.VirusEngine).And.Contain(ServiceCatalog.VirusIcap));
            Assert.That(File.Exists(Environment.RefusedSignaturesFile), Is.False, "the VPN's failure is not the signatures'");
            Assert.That(File.ReadAllText(Environment.StartedSignaturesFile).Trim(), Is.EqualTo(Environment.SignatureSet()));
        });
    }
}
