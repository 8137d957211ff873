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
        var problems = await manager.CheckHealthAsync(CancellationToken.None);
        Assert.That(problems, Has.Count.EqualTo(1).And.Some.Contains("dnsmasq: daemon not running (CrashLoop"));
        lock (log) { Assert.That(log, Has.Some.Contains("crashed 3 times within 60 s; left stopped")); }

        // a new configuration starts it afresh
        var changes = await manager.ApplyAsync([Dns("2")], CancellationToken.None);
        Assert.That(changes.Reloaded.Concat(changes.Restarted), Is.EqualTo(new[] { "dnsmasq" }));
        Assert.That(State(manager).State, Is.EqualTo(ServiceState.Running));
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
