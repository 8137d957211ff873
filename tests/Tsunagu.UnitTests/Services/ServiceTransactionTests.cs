using Microsoft.Extensions.Time.Testing;
using Tsunagu.Firmware.Services;
using Tsunagu.Firmware.Storage;
using Tsunagu.Hal;
using Tsunagu.Hal.Simulated;
using Tsunagu.Protocol;

namespace Tsunagu.UnitTests.Services;

/// <summary>The apply transaction and the confirm timer over the simulated service manager.</summary>
public class ServiceTransactionTests
{
    private static readonly TimeSpan ConfirmTimeout = TimeSpan.FromMinutes(2);
    private string _root = "";
    private StateStore _store = null!;
    private FakeTimeProvider _time = null!;
    private SimulatedServiceManager _manager = null!;
    private readonly List<string> _log = [];

    [SetUp]
    public void SetUp()
    {
        _root = Path.Combine(Path.GetTempPath(), "tsunagu-tx-" + Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(_root);
        _store = StateStore.Open(_root);
        _time = new FakeTimeProvider(new DateTimeOffset(2026, 1, 1, 0, 0, 0, TimeSpan.Zero));
        _manager = new SimulatedServiceManager();
        _log.Clear();
    }

    [TearDown]
    public void TearDown()
    {
        _store.Dispose();
        Directory.Delete(_root, recursive: true);
    }

    private ServiceApplier NewApplier() => new(_root, _manager,
        ServiceConfigTests.WithHdd with { RunDirectory = Path.Combine(_root, "run"), StateDirectory = Path.Combine(_root, "state") },
        _store, _time, _log.Add, ConfirmTimeout);

    private static ServiceConfiguration Config(int port) =>
        ServiceConfigTests.Valid() with { Firewall = ServiceConfigTests.Valid().Firewall with { PortForwards = [new PortForward("tcp", port, "192.168.10.20", 80)] } };

    [Test]
    public async Task Boot_without_configuration_runs_the_fail_closed_firewall_alone()
    {
        using var applier = NewApplier();
        await applier.StartAsync(CancellationToken.None);
        Assert.That(_manager.Running, Is.EqualTo(new[] { "firewall" }));
        Assert.That(File.ReadAllText(Path.Combine(applier.Root, "fail-closed.nft")), Does.Contain("policy drop"));
    }

    [Test]
    public async Task At_boot_every_service_is_started_even_when_one_before_others_does_not_start_and_the_failure_is_reported()
    {
        using (var applier = NewApplier())
        {
            await applier.StartAsync(CancellationToken.None);
            await applier.ApplyAsync(1, Config(8080), CancellationToken.None);
        }
        // the restart: a fresh manager; the VPN (between DNS and the cache) does not take its configuration
        _manager = new SimulatedServiceManager(options: new ServiceManagerOptions { ConfigureTimeout = TimeSpan.Zero, HealthSettle = TimeSpan.Zero });
        _manager.Processes.RefuseConfigure.Add("wireguard");
        _log.Clear();
        using var booted = NewApplier();
        var e = Assert.ThrowsAsync<ServiceException>(() => booted.StartAsync(CancellationToken.None));
        Assert.That(e!.Service, Is.EqualTo("wireguard"));
        Assert.That(e.Message, Does.Contain("configure `wg setconf"));
        Assert.That(_manager.Events, Is.EqualTo(new[] { "start firewall", "start lan", "start dnsmasq", "start wireguard", "start squid" }), "every service was tried, in order");
        Assert.That(_manager.Running, Does.Contain("squid"), "the service after the failing one runs");
        Assert.That(_manager.Status().Single(s => s.Name == "wireguard").LastError, Does.Contain("configure `wg setconf"));
        Assert.That(_manager.Status().Where(s => s.Name != "wireguard").Select(s => s.LastError), Is.All.Null, "every other service started");
        Assert.That(_log, Has.Some.Contains("services: revision 1 started, but not every service: wireguard"));
        Assert.That(booted.CurrentRevision(), Is.EqualTo(1), "the revision stays in force");
    }

    [Test]
    public async Task Only_the_service_whose_configuration_changed_is_reloaded()
    {
        using var applier = NewApplier();
        await applier.StartAsync(CancellationToken.None);
        await applier.ApplyAsync(1, Config(8080), CancellationToken.None);
        _manager.Events.Clear();
        var report = await applier.ApplyAsync(2, Config(8081), CancellationToken.None);
        Assert.That(_manager.Events.Where(e => !e.StartsWith("validate", StringComparison.Ordinal)), Is.EqualTo(new[] { "reload firewall" }));
        Assert.That(report.Changes.Unchanged, Is.EqualTo(new[] { "lan", "dnsmasq", "wireguard", "squid" }));
    }

    [Test]
    public async Task A_configuration_refused_by_a_checker_changes_nothing()
    {
        using var applier = NewApplier();
        await applier.ApplyAsync(1, Config(8080), CancellationToken.None);
        _manager.Events.Clear();
        _manager.RefuseChecks["dnsmasq"] = "bad option at line 3";
        var e = Assert.ThrowsAsync<ServiceApplyException>(() => applier.ApplyAsync(2, Config(8081), CancellationToken.None));
        Assert.That(e!.Step, Is.EqualTo("validate"));
        Assert.That(e.Message, Does.Contain("dnsmasq").And.Contain("bad option at line 3"));
        Assert.That(applier.CurrentRevision(), Is.EqualTo(1));
        Assert.That(_manager.Events.Where(x => !x.StartsWith("validate", StringComparison.Ordinal)), Is.Empty, "nothing was reloaded");
        Assert.That(Directory.Exists(Path.Combine(applier.Root, "rev-2")), Is.False);
    }

    [Test]
    public async Task A_failed_health_check_restores_the_previous_revision_and_says_why()
    {
        using var applier = NewApplier();
        await applier.ApplyAsync(1, Config(8080), CancellationToken.None);
        await applier.ConfirmAsync(CancellationToken.None);
        _manager.Unhealthy.Add("firewall");
        _manager.Events.Clear();
        var e = Assert.ThrowsAsync<ServiceApplyException>(() => applier.ApplyAsync(2, Config(8081), CancellationToken.None));
        _manager.Unhealthy.Clear();
        Assert.That(e!.Step, Is.EqualTo("health check"));
        Assert.That(e.Message, Does.Contain("firewall: probe").And.Contain("simulated failure"));
        Assert.That(applier.CurrentRevision(), Is.EqualTo(1));
        Assert.That(_manager.Events.Where(x => !x.StartsWith("validate", StringComparison.Ordinal)), Is.EqualTo(new[] { "reload firewall", "reload firewall" }));
        Assert.That(_store.Get(StateKeys.ServiceTransaction, FirmwareJson.Default.ServiceTransaction), Is.Null);
        Assert.That(File.ReadAllText(Path.Combine(applier.Root, "current", "nftables.nft")), Does.Contain("dport 8080"));
    }

    [Test]
    public async Task A_daemon_that_never_gets_ready_is_a_failed_reload_and_the_previous_revision_serves_again()
    {
        _manager = new SimulatedServiceManager(options: new ServiceManagerOptions { HealthSettle = TimeSpan.Zero, ConfigureTimeout = TimeSpan.FromMilliseconds(300) });
        using var applier = NewApplier();
        await applier.ApplyAsync(1, Config(8080), CancellationToken.None);
        Assert.That(_manager.Processes.Calls(), Has.Some.EqualTo("ready squid"), "squid's ready command ran after its start");
        var bigger = Config(8080) with { Cache = Config(8080).Cache with { SizeMegabytes = 1024 } };
        _manager.Processes.NotReady.Add("squid");
        _manager.Events.Clear();
        var e = Assert.ThrowsAsync<ServiceApplyException>(() => applier.ApplyAsync(2, bigger, CancellationToken.None));
        Assert.That(e!.Step, Is.EqualTo("reload"));
        Assert.That(e.Message, Does.Contain("squid: not ready within"));
        Assert.That(applier.CurrentRevision(), Is.EqualTo(1));
        Assert.That(_manager.Events.Where(x => !x.StartsWith("validate", StringComparison.Ordinal)), Is.EqualTo(new[] { "restart squid", "restart squid" }),
            "revision 2's squid, then revision 1's again; nothing else touched");
        Assert.That(File.ReadAllText(Path.Combine(applier.Root, "current", "squid.conf")), Does.Contain("cache_dir ufs /hdd/squid 512 "));
        Assert.That(_manager.Status().Single(s => s.Name == "squid").State, Is.EqualTo(ServiceState.Running));
        Assert.That(await _manager.CheckHealthAsync(CancellationToken.None), Is.Empty, "revision 1's squid is ready");
    }

    [Test]
    public async Task A_restore_that_cannot_start_a_service_again_still_starts_the_later_ones_and_checks_health()
    {
        _manager = new SimulatedServiceManager(options: new ServiceManagerOptions { HealthSettle = TimeSpan.Zero, ConfigureTimeout = TimeSpan.Zero });
        var manager = new RefuseOnRestore(_manager, "wireguard");
        using var applier = new ServiceApplier(_root, manager, NewApplier().Environment, _store, _time, _log.Add, ConfirmTimeout);
        await applier.ApplyAsync(1, Config(8080), CancellationToken.None);
        var revision1 = _manager.Status().ToDictionary(s => s.Name, s => s.Digest);
        // revision 2 reloads wireguard (another port) and restarts squid (a bigger cache), and its squid never gets ready
        var next = Config(8080) with { Vpn = Config(8080).Vpn with { ListenPort = 51821 }, Cache = Config(8080).Cache with { SizeMegabytes = 1024 } };
        _manager.Processes.NotReady.Add("squid");
        manager.Armed = true;
        var before = _manager.Processes.Calls().Count;
        var e = Assert.ThrowsAsync<ServiceApplyException>(() => applier.ApplyAsync(2, next, CancellationToken.None));
        Assert.That(e!.Message, Does.Contain("squid: not ready within"));
        Assert.That(applier.CurrentRevision(), Is.EqualTo(1));

        // the restore: wireguard refuses revision 1's configuration again, yet squid (after it) is back on revision 1
        var status = _manager.Status().ToDictionary(s => s.Name, s => s.Digest);
        Assert.That(status["squid"], Is.EqualTo(revision1["squid"]), "the service after the failing one was restored");
        Assert.That(_manager.Status().Single(s => s.Name == "squid").State, Is.EqualTo(ServiceState.Running));
        var calls = _manager.Processes.Calls().Skip(before).ToList();
        Assert.That(calls.LastIndexOf("start squid"), Is.GreaterThan(calls.LastIndexOf("configure wireguard")), "squid started after wireguard failed");
        Assert.That(calls.Skip(calls.LastIndexOf("start squid")), Has.Some.EqualTo("probe squid"), "the health check ran after the restore");
        Assert.That(_log, Has.Some.Contains("revision 1 restored: but a service did not start again: wireguard:")
            .And.Some.Contains("still unhealthy: wireguard: daemon not configured"));
    }

    /// <summary>The simulated manager, except that once <see cref="Armed"/> the daemon of <paramref name="service"/> refuses its configure commands from the restore on.</summary>
    private sealed class RefuseOnRestore(SimulatedServiceManager inner, string service) : IServiceManager
    {
        public bool Armed { get; set; }
        private int _applies;

        public Task ValidateAsync(IReadOnlyList<ServiceSpec> services, CancellationToken ct) => inner.ValidateAsync(services, ct);

        public Task<ServiceChanges> ApplyAsync(IReadOnlyList<ServiceSpec> services, CancellationToken ct)
        {
            Arm();
            return inner.ApplyAsync(services, ct);
        }

        public Task<ServiceChanges> RestoreAsync(IReadOnlyList<ServiceSpec> services, CancellationToken ct)
        {
            Arm();
            return inner.RestoreAsync(services, ct);
        }

        /// <summary>The apply after the one that was armed (the restore, whichever way it is asked for) meets the refusing daemon.</summary>
        private void Arm()
        {
            if (Armed && _applies++ == 1) { inner.Processes.RefuseConfigure.Add(service); }
        }

        public Task<IReadOnlyList<string>> CheckHealthAsync(CancellationToken ct) => inner.CheckHealthAsync(ct);
        public IReadOnlyList<ServiceStatus> Status() => inner.Status();
        public Task StopAllAsync(CancellationToken ct) => inner.StopAllAsync(ct);
    }

    [Test]
    public async Task A_restart_in_the_middle_of_an_apply_recovers_the_previous_revision()
    {
        using (var applier = NewApplier())
        {
            await applier.ApplyAsync(1, Config(8080), CancellationToken.None);
            await applier.ConfirmAsync(CancellationToken.None);
        }
        // the supervisor died after the swap, before the commit: the transaction record and the link say so
        using (var cts = new CancellationTokenSource())
        using (var reference = NewApplier())
        using (var dying = new ServiceApplier(_root, new CrashingManager(_manager, cts), reference.Environment, _store, _time, _log.Add, ConfirmTimeout))
        {
            Assert.CatchAsync<OperationCanceledException>(() => dying.ApplyAsync(2, Config(8081), cts.Token));
            Assert.That(dying.CurrentRevision(), Is.EqualTo(2), "killed between swap and commit");
            Assert.That(_store.Get(StateKeys.ServiceTransaction, FirmwareJson.Default.ServiceTransaction)!.Previous, Is.EqualTo(1));
        }
        await _manager.StopAllAsync(CancellationToken.None); // the daemons died with it
        using (var applier = NewApplier())
        {
            await applier.StartAsync(CancellationToken.None);
            Assert.That(applier.CurrentRevision(), Is.EqualTo(1));
            Assert.That(Directory.Exists(Path.Combine(applier.Root, "rev-2")), Is.False);
            Assert.That(_store.Get(StateKeys.ServiceTransaction, FirmwareJson.Default.ServiceTransaction), Is.Null);
            Assert.That(_manager.Running, Is.EqualTo(new[] { "firewall", "lan", "dnsmasq", "wireguard", "squid" }));
            Assert.That(_log, Has.Some.Contains("apply of revision 2 was interrupted; restoring revision 1"));
        }
    }

    [Test]
    public async Task Unconfirmed_revision_is_reverted_when_the_host_is_not_reached_in_time()
    {
        using var applier = NewApplier();
        var reverted = new List<int>();
        applier.Reverted += (revision, _) => reverted.Add(revision);
        await applier.ApplyAsync(1, Config(8080), CancellationToken.None);
        Assert.That(await applier.ConfirmAsync(CancellationToken.None), Is.True);
        await applier.ApplyAsync(2, Config(8081), CancellationToken.None);
        Assert.That(applier.Pending!.Deadline, Is.EqualTo(_time.GetUtcNow() + ConfirmTimeout));
        _time.Advance(ConfirmTimeout - TimeSpan.FromSeconds(1));
        Assert.That(applier.CurrentRevision(), Is.EqualTo(2), "not yet");
        _time.Advance(TimeSpan.FromSeconds(1));
        await applier.ConfirmTimer!;
        Assert.That(applier.CurrentRevision(), Is.EqualTo(1));
        Assert.That(reverted, Is.EqualTo(new[] { 2 }));
        Assert.That(applier.Pending, Is.Null);
        var applied = _store.Get(StateKeys.AppliedConfig, FirmwareJson.Default.AppliedConfig)!;
        Assert.That(applied.Revision, Is.EqualTo(2));
        Assert.That(applied.Error, Does.StartWith("reverted to revision 1: the host was not reached within 120 s"));
    }

    [Test]
    public async Task Confirmation_before_the_deadline_keeps_the_new_revision()
    {
        using var applier = NewApplier();
        await applier.ApplyAsync(1, Config(8080), CancellationToken.None);
        await applier.ConfirmAsync(CancellationToken.None);
        await applier.ApplyAsync(2, Config(8081), CancellationToken.None);
        var timer = applier.ConfirmTimer!;
        _time.Advance(TimeSpan.FromSeconds(30));
        Assert.That(await applier.ConfirmAsync(CancellationToken.None), Is.True);
        await timer;
        _time.Advance(ConfirmTimeout * 2);
        Assert.That(applier.CurrentRevision(), Is.EqualTo(2));
        Assert.That(applier.ConfirmedRevision, Is.EqualTo(2));
        Assert.That(Directory.GetDirectories(applier.Root, "rev-*").Select(Path.GetFileName), Is.EqualTo(new[] { "rev-2" }));
    }

    [TestCase(false, TestName = "Confirm_timer_survives_a_restart_and_fires_later")]
    [TestCase(true, TestName = "Confirm_deadline_that_passed_while_down_reverts_at_boot")]
    public async Task Confirm_timer_survives_a_restart(bool deadlinePassedWhileDown)
    {
        using (var applier = NewApplier())
        {
            await applier.ApplyAsync(1, Config(8080), CancellationToken.None);
            await applier.ConfirmAsync(CancellationToken.None);
            await applier.ApplyAsync(2, Config(8081), CancellationToken.None);
            _time.Advance(TimeSpan.FromSeconds(60));
        }
        await _manager.StopAllAsync(CancellationToken.None); // power cut: daemons and timers gone, the store stays
        if (deadlinePassedWhileDown) { _time.Advance(TimeSpan.FromMinutes(10)); }
        using (var applier = NewApplier())
        {
            await applier.StartAsync(CancellationToken.None);
            if (!deadlinePassedWhileDown)
            {
                Assert.That(applier.CurrentRevision(), Is.EqualTo(2), "still within the deadline after the restart");
                _time.Advance(TimeSpan.FromSeconds(60));
                await applier.ConfirmTimer!;
            }
            Assert.That(applier.CurrentRevision(), Is.EqualTo(1));
            Assert.That(_manager.Running, Is.EqualTo(new[] { "firewall", "lan", "dnsmasq", "wireguard", "squid" }));
            Assert.That(File.ReadAllText(Path.Combine(applier.Root, "current", "nftables.nft")), Does.Contain("dport 8080"));
        }
    }

    [Test]
    public async Task A_wall_clock_set_back_while_down_does_not_stretch_the_confirm_wait_past_the_timeout()
    {
        using (var applier = NewApplier())
        {
            await applier.ApplyAsync(1, Config(8080), CancellationToken.None);
            await applier.ConfirmAsync(CancellationToken.None);
            await applier.ApplyAsync(2, Config(8081), CancellationToken.None);
        }
        await _manager.StopAllAsync(CancellationToken.None);
        // the clock was a day ahead when the deadline was written, and is right now: the deadline looks a day away
        var pending = _store.Get(StateKeys.PendingConfirm, FirmwareJson.Default.PendingConfirm)!;
        _store.Set(StateKeys.PendingConfirm, pending with { Deadline = _time.GetUtcNow() + TimeSpan.FromDays(1) }, FirmwareJson.Default.PendingConfirm);
        using (var applier = NewApplier())
        {
            await applier.StartAsync(CancellationToken.None);
            Assert.That(applier.CurrentRevision(), Is.EqualTo(2));
            _time.Advance(ConfirmTimeout);
            await applier.ConfirmTimer!.WaitAsync(TimeSpan.FromSeconds(30));
            Assert.That(applier.CurrentRevision(), Is.EqualTo(1), "reverted one confirm timeout after the restart, not a day later");
        }
    }

    /// <summary>Passes through to the simulated manager, but "kills the supervisor" (cancels) during the reload.</summary>
    private sealed class CrashingManager(SimulatedServiceManager inner, CancellationTokenSource kill) : IServiceManager
    {
        public Task ValidateAsync(IReadOnlyList<ServiceSpec> services, CancellationToken ct) => inner.ValidateAsync(services, ct);

        public async Task<ServiceChanges> ApplyAsync(IReadOnlyList<ServiceSpec> services, CancellationToken ct)
        {
            await kill.CancelAsync();
            ct.ThrowIfCancellationRequested();
            return await inner.ApplyAsync(services, ct);
        }

        public Task<ServiceChanges> RestoreAsync(IReadOnlyList<ServiceSpec> services, CancellationToken ct) => inner.RestoreAsync(services, ct);
        public Task<IReadOnlyList<string>> CheckHealthAsync(CancellationToken ct) => inner.CheckHealthAsync(ct);
        public IReadOnlyList<ServiceStatus> Status() => inner.Status();
        public Task StopAllAsync(CancellationToken ct) => inner.StopAllAsync(ct);
    }
}
