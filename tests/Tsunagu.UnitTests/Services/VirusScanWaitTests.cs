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

        // every database gone (a rollback while clamd did not run yet): the checker stops and squid passes downloads again
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
    public async Task A_restart_after_the_first_signatures_were_placed_starts_the_checker()
    {
        using (var applier = new ServiceApplier(_root, _manager, Environment, _store, TimeProvider.System, _log.Add, TimeSpan.Zero))
        {
            await applier.StartAsync(CancellationToken.None);
            await applier.ApplyAsync(1, On, CancellationToken.None);
        }
        // the update placed the database and the unit lost power before the refresh
        Database("first.hdb");
        _manager = new SimulatedServiceManager();
        using var booted = new ServiceApplier(_root, _manager, Environment, _store, TimeProvider.System, _log.Add, TimeSpan.Zero);
        await booted.StartAsync(CancellationToken.None);
        Assert.That(_manager.Running, Does.Contain(ServiceCatalog.VirusEngine).And.Contain(ServiceCatalog.VirusIcap));
        Assert.That(File.ReadAllText(Path.Combine(booted.Root, "current", ServiceRenderer.Squid)), Does.Contain("icap_service avscan"));
    }
}
