using Microsoft.Extensions.Time.Testing;
using Tsunagu.Hal;
using Tsunagu.Hal.Simulated;

namespace Tsunagu.UnitTests.Hal;

/// <summary>
/// The service manager's policy (diff, reload in place, restart, crash loop), run through the simulated twin's fake
/// processes: the same code the Linux adapter runs over real ones.
/// </summary>
public class ServiceManagerTests
{
    private static readonly DateTimeOffset Start = new(2030, 1, 1, 0, 0, 0, TimeSpan.Zero);

    private static readonly CommandLine Daemon = new("dnsmasq", "--keep-in-foreground");

    // the daemon is the same command line object while it does not change: the policy compares the daemons of two
    // specifications as records, and the list of arguments of a record compares by reference
    private static ServiceSpec Dns(string digest, CommandLine? daemon = null, string configure = "reload") => new("dnsmasq", digest)
    {
        Checks = [new CommandLine("dnsmasq", "--test")],
        Daemon = daemon ?? Daemon,
        Configure = [new CommandLine("dnsmasq-ctl", configure)],
        Probes = [new CommandLine("dnsmasq-ctl", "ping")],
    };

    private static ServiceSpec Firewall(string digest) => new("firewall", digest) { Setup = [new CommandLine("nft", "-f", digest)] };

    [Test]
    public async Task Only_changed_services_are_touched_and_a_daemon_is_reloaded_in_place_when_it_can_be()
    {
        var manager = new SimulatedServiceManager();
        var changes = await manager.ApplyAsync([Firewall("1"), Dns("1")], CancellationToken.None);
        Assert.That(changes.Started, Is.EqualTo(new[] { "firewall", "dnsmasq" }));
        manager.Events.Clear();

        changes = await manager.ApplyAsync([Firewall("1"), Dns("2", configure: "reload-2")], CancellationToken.None);
        Assert.That((changes.Reloaded, changes.Unchanged), Is.EqualTo((new[] { "dnsmasq" }, new[] { "firewall" })));
        changes = await manager.ApplyAsync([Firewall("1"), Dns("3", new CommandLine("dnsmasq", "--no-daemon"))], CancellationToken.None);
        Assert.That(changes.Restarted, Is.EqualTo(new[] { "dnsmasq" }), "a changed daemon command needs a restart");
        changes = await manager.ApplyAsync([Dns("3", new CommandLine("dnsmasq", "--no-daemon"))], CancellationToken.None);
        Assert.That(changes.Stopped, Is.EqualTo(new[] { "firewall" }));
        Assert.That(manager.Events, Is.EqualTo(new[] { "reload dnsmasq", "restart dnsmasq", "stop firewall" }));
        Assert.That(await manager.CheckHealthAsync(CancellationToken.None), Is.Empty);
        Assert.That(manager.Status().Select(s => (s.Name, s.State)), Is.EqualTo(new[] { ("dnsmasq", ServiceState.Running) }));
    }

    [Test]
    public async Task A_crashing_daemon_is_restarted_with_a_growing_delay_then_left_stopped_in_a_crash_loop()
    {
        var time = new FakeTimeProvider(Start);
        var log = new List<string>();
        var manager = new SimulatedServiceManager(time, new ServiceManagerOptions
        {
            CrashLimit = 3, CrashWindow = TimeSpan.FromMinutes(1), RestartDelay = TimeSpan.FromSeconds(2), HealthSettle = TimeSpan.Zero,
        }, message => { lock (log) { log.Add(message); } });
        await manager.ApplyAsync([Dns("1")], CancellationToken.None);

        for (var crash = 1; crash <= 2; crash++)
        {
            Assert.That(manager.Crash("dnsmasq"), Is.True);
            await Until(() => State(manager).State == ServiceState.Restarting);
            time.Advance(TimeSpan.FromSeconds(2) * crash - TimeSpan.FromMilliseconds(1));
            await Task.Delay(20);
            Assert.That(State(manager).State, Is.EqualTo(ServiceState.Restarting), $"crash {crash}: the delay grows with the crashes");
            time.Advance(TimeSpan.FromMilliseconds(1));
            await Until(() => State(manager).State == ServiceState.Running);
            Assert.That(State(manager).Restarts, Is.EqualTo(crash));
        }

        Assert.That(manager.Crash("dnsmasq", exitCode: 139), Is.True);
        await Until(() => State(manager).State == ServiceState.CrashLoop);
        time.Advance(TimeSpan.FromMinutes(5));
        await Task.Delay(20);
        Assert.That(State(manager), Is.EqualTo(new ServiceStatus("dnsmasq", ServiceState.CrashLoop, "1", 2, "exited with 139: (no output)")),
            "left stopped: no more restarts");
        Assert.That(manager.Processes.Started("dnsmasq"), Is.EqualTo(3), "the first daemon and two restarts, none after the third crash");
        var problems = await manager.CheckHealthAsync(CancellationToken.None);
        Assert.That(problems, Has.Count.EqualTo(1).And.Some.Contains("dnsmasq: daemon not running (CrashLoop"));
        lock (log) { Assert.That(log, Has.Some.Contains("crashed 3 times within 60 s; left stopped")); }

        // a new configuration starts it afresh
        var changes = await manager.ApplyAsync([Dns("2")], CancellationToken.None);
        Assert.That(changes.Reloaded.Concat(changes.Restarted), Is.EqualTo(new[] { "dnsmasq" }));
        Assert.That(State(manager).State, Is.EqualTo(ServiceState.Running));
        Assert.That(manager.Processes.Started("dnsmasq"), Is.EqualTo(4));
    }

    [Test]
    public async Task The_processes_see_only_what_the_diff_asks_for()
    {
        var manager = new SimulatedServiceManager();
        await manager.ApplyAsync([Firewall("1"), Dns("1")], CancellationToken.None);
        Assert.That(manager.Processes.Calls(), Is.EqualTo(new[] { "setup firewall", "start dnsmasq", "configure dnsmasq" }));
        Assert.That(await Apply(manager, Firewall("1"), Dns("1")), Is.Empty, "nothing changed: nothing runs");
        Assert.That(await Apply(manager, Firewall("1"), Dns("2", configure: "reload-2")), Is.EqualTo(new[] { "configure dnsmasq" }),
            "reloaded in place: the same daemon, only its configure commands");
        Assert.That(await Apply(manager, Firewall("2"), Dns("2", configure: "reload-2")), Is.EqualTo(new[] { "setup firewall" }));
        Assert.That(await Apply(manager, Firewall("2"), Dns("3", new CommandLine("dnsmasq", "--no-daemon"))),
            Is.EqualTo(new[] { "stop dnsmasq", "start dnsmasq", "configure dnsmasq" }), "a new daemon command: restarted");
        Assert.That(await Apply(manager, Dns("3", new CommandLine("dnsmasq", "--no-daemon"))), Is.Empty, "a set-up service has nothing to stop");
        Assert.That(manager.Processes.Started("dnsmasq"), Is.EqualTo(2));
    }

    [Test]
    public async Task A_daemon_that_refused_its_configure_commands_is_reported_and_configured_again_at_the_next_apply()
    {
        var manager = new SimulatedServiceManager(new FakeTimeProvider(Start), new ServiceManagerOptions { ConfigureTimeout = TimeSpan.Zero, HealthSettle = TimeSpan.Zero });
        manager.Processes.RefuseConfigure.Add("dnsmasq");
        var e = Assert.ThrowsAsync<ServiceException>(() => manager.ApplyAsync([Dns("1")], CancellationToken.None));
        Assert.That(e!.Message, Does.Contain("configure `dnsmasq-ctl reload` failed (exit 1): simulated failure"));
        Assert.That(await manager.CheckHealthAsync(CancellationToken.None), Has.Count.EqualTo(1).And.Some.Contains("dnsmasq: daemon not configured"),
            "a daemon running without its configuration is not healthy");

        manager.Processes.RefuseConfigure.Clear();
        var before = manager.Processes.Calls().Count;
        var changes = await manager.ApplyAsync([Dns("1")], CancellationToken.None);
        Assert.That((changes.Unchanged, changes.Reloaded), Is.EqualTo((Array.Empty<string>(), new[] { "dnsmasq" })),
            "the same digest, but its configure commands never succeeded: run again");
        Assert.That(manager.Processes.Calls().Skip(before), Is.EqualTo(new[] { "configure dnsmasq" }), "in place, on the same daemon");
        Assert.That(manager.Processes.Started("dnsmasq"), Is.EqualTo(1));
        Assert.That(await manager.CheckHealthAsync(CancellationToken.None), Is.Empty);
        Assert.That(await Apply(manager, Dns("1")), Is.Empty, "configured now: unchanged");
    }

    private static async Task<IReadOnlyList<string>> Apply(SimulatedServiceManager manager, params ServiceSpec[] specs)
    {
        var before = manager.Processes.Calls().Count;
        await manager.ApplyAsync(specs, CancellationToken.None);
        return manager.Processes.Calls().Skip(before).ToList();
    }

    [Test]
    public void A_refused_check_names_the_service_and_changes_nothing()
    {
        var manager = new SimulatedServiceManager();
        manager.RefuseChecks["dnsmasq"] = "bad option at line 3";
        var e = Assert.ThrowsAsync<ServiceException>(() => manager.ValidateAsync([Firewall("1"), Dns("1")], CancellationToken.None));
        Assert.That((e!.Service, e.Message), Is.EqualTo(("dnsmasq", "dnsmasq: configuration refused by `dnsmasq --test` (exit 1): simulated checker: bad option at line 3")));
        Assert.That(manager.Status(), Is.Empty);
        Assert.That(manager.Events, Is.EqualTo(new[] { "validate firewall", "validate dnsmasq" }));
    }

    private static ServiceStatus State(SimulatedServiceManager manager) => manager.Status().Single(s => s.Name == "dnsmasq");

    private static async Task Until(Func<bool> condition)
    {
        for (var i = 0; i < 500 && !condition(); i++) { await Task.Delay(10); }
        Assert.That(condition(), Is.True, "condition not reached in 5 s");
    }
}
