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

    // a daemon that loads a database before it answers (clamd): minutes to get ready
    private static readonly CommandLine Clamd = new("clamd", "-c", "clamd.conf");

    private static ServiceSpec Engine(string digest) => new("clamd", digest)
    {
        Daemon = Clamd,
        Ready = [new CommandLine("clamdscan", "--ping", "1")],
        ReadyTimeout = TimeSpan.FromMinutes(3),
    };

    private static ServiceStatus StateOf(SimulatedServiceManager manager, string name) => manager.Status().Single(s => s.Name == name);

    [Test]
    public async Task A_crash_restart_waits_for_readiness_without_holding_the_manager()
    {
        var time = new FakeTimeProvider(Start);
        var manager = new SimulatedServiceManager(time, new ServiceManagerOptions { RestartDelay = TimeSpan.FromSeconds(1), HealthSettle = TimeSpan.Zero });
        await manager.ApplyAsync([Engine("1")], CancellationToken.None);
        manager.Processes.NeverReady.Add("clamd");
        Assert.That(manager.Crash("clamd"), Is.True);
        await Until(() => StateOf(manager, "clamd").State == ServiceState.Restarting);
        time.Advance(TimeSpan.FromSeconds(1));
        // the restarted daemon is up and being asked whether it is ready; the fake clock does not move, so it is still waiting
        await Until(() => manager.Processes.Started("clamd") == 2 && manager.Processes.Calls()[^1] == "ready clamd");

        var status = Task.Run(manager.Status);
        Assert.That(await Task.WhenAny(status, Task.Delay(TimeSpan.FromSeconds(30))), Is.SameAs(status), "status answers during the wait");
        Assert.That((await status).Single().State, Is.EqualTo(ServiceState.Restarting), "not running until ready");

        // an apply meanwhile takes over: it replaces the daemon that is not ready, and the abandoned wait starts nothing more
        manager.Processes.NeverReady.Clear();
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(30));
        var changes = await manager.ApplyAsync([Engine("2")], cts.Token);
        Assert.That(changes.Restarted, Is.EqualTo(new[] { "clamd" }));
        Assert.That(manager.Processes.Started("clamd"), Is.EqualTo(3));
        time.Advance(TimeSpan.FromMinutes(10));
        // settled: the abandoned restart has ended (no crash restart in progress); only a crash or an apply starts a daemon now
        await Until(() => manager.RestartsInProgress == 0);
        Assert.That(manager.Processes.Started("clamd"), Is.EqualTo(3), "the cancelled restart did not start another daemon");
        Assert.That(StateOf(manager, "clamd"), Is.EqualTo(new ServiceStatus("clamd", ServiceState.Running, "2", 1, null)));
        Assert.That(await manager.CheckHealthAsync(CancellationToken.None), Is.Empty);
    }

    [Test]
    public async Task A_restarted_daemon_that_never_gets_ready_ends_in_a_crash_loop()
    {
        var time = new FakeTimeProvider(Start);
        var log = new List<string>();
        var options = new ServiceManagerOptions
        {
            CrashLimit = 3, CrashWindow = TimeSpan.FromMinutes(1), RestartDelay = TimeSpan.FromSeconds(1), HealthSettle = TimeSpan.Zero,
        };
        var manager = new SimulatedServiceManager(time, options, message => { lock (log) { log.Add(message); } });
        await manager.ApplyAsync([Engine("1")], CancellationToken.None);
        manager.Processes.NeverReady.Add("clamd");
        Assert.That(manager.Crash("clamd"), Is.True);

        // each attempt waits its 3 minutes, longer than the crash window: the crashes alone would never add up
        for (var step = 0; step < 400 && StateOf(manager, "clamd").State != ServiceState.CrashLoop; step++)
        {
            var calls = manager.Processes.Calls().Count;
            time.Advance(TimeSpan.FromSeconds(30));
            for (var i = 0; i < 100 && manager.Processes.Calls().Count == calls && StateOf(manager, "clamd").State != ServiceState.CrashLoop; i++)
            {
                await Task.Delay(10);
            }
        }
        var state = StateOf(manager, "clamd");
        Assert.That(state.State, Is.EqualTo(ServiceState.CrashLoop), "a daemon that runs but never gets ready is given up on");
        Assert.That(state.LastError, Does.Contain("not ready within 180 s"));
        Assert.That(manager.Processes.Started("clamd"), Is.EqualTo(1 + options.CrashLimit), "the first daemon and CrashLimit restarts, no more");
        Assert.That(state.Restarts, Is.EqualTo(options.CrashLimit));
        // the watcher that decided the crash loop has ended: nothing is waiting to restart it, however long the clock runs
        await Until(() => manager.RestartsInProgress == 0);
        time.Advance(TimeSpan.FromHours(1));
        Assert.That(manager.RestartsInProgress, Is.Zero, "no restart began");
        Assert.That(manager.Processes.Started("clamd"), Is.EqualTo(1 + options.CrashLimit), "left stopped");
        Assert.That(manager.Status().Single().State, Is.EqualTo(ServiceState.CrashLoop));
        lock (log) { Assert.That(log, Has.Some.Contains("restarts in a row did not get ready; left stopped")); }
    }

    [Test]
    public async Task A_configure_or_ready_command_is_given_only_the_time_left_of_its_wait()
    {
        var time = new TimerCountingClock(Start);
        var processes = new TimedProcesses(time);
        var manager = new ServiceManager(processes, new ServiceManagerOptions
        {
            CommandTimeout = TimeSpan.FromSeconds(30), ConfigureTimeout = TimeSpan.FromSeconds(10), HealthSettle = TimeSpan.Zero,
        }, time);
        var spec = Engine("1") with { Configure = [new CommandLine("clamd-ctl", "load")], ReadyTimeout = TimeSpan.FromSeconds(10) };
        var apply = manager.ApplyAsync([spec], CancellationToken.None);
        await Until(() => processes.Timeouts.Count(t => t.Step == ServiceStep.Ready) == 1);
        // the clock moves only while the manager waits on a timer of it (not while a busy machine has not got there yet)
        var deadline = DateTime.UtcNow.AddSeconds(120);
        while (!apply.IsCompleted && DateTime.UtcNow < deadline)
        {
            if (time.Pending > 0) { time.Advance(TimeSpan.FromMilliseconds(200)); }
            await Task.Delay(5);
        }
        Assert.That(apply.IsCompleted, Is.True, "the apply ended");
        await apply;
        var timeouts = processes.Timeouts.ToList();
        Assert.That(timeouts.Where(t => t.Step == ServiceStep.Configure).Select(t => t.Timeout), Is.EqualTo(new[] { TimeSpan.FromSeconds(10) }));
        var ready = timeouts.Where(t => t.Step == ServiceStep.Ready).Select(t => t.Timeout).ToList();
        Assert.That(ready, Has.Count.EqualTo(2));
        Assert.That(ready[0], Is.EqualTo(TimeSpan.FromSeconds(10)), "the first attempt: the whole ready timeout, not the 30 s of a command");
        Assert.That(ready[1], Is.LessThanOrEqualTo(TimeSpan.FromSeconds(2)).And.GreaterThan(TimeSpan.Zero),
            "the first attempt took 8 s: the second has what is left of the 10 s");
        Assert.That(await manager.CheckHealthAsync(CancellationToken.None), Is.Empty);
        Assert.That(processes.Timeouts.Where(t => t.Step == ServiceStep.Probe).Select(t => t.Timeout), Is.All.EqualTo(TimeSpan.FromSeconds(30)),
            "probes have no wait to fit in: a command's timeout");
    }

    /// <summary>Succeeds at everything and records each command's timeout; the first ready command takes 8 s and fails.</summary>
    private sealed class TimedProcesses(FakeTimeProvider time) : IServiceProcesses
    {
        private readonly SimulatedServiceProcesses _inner = new();
        public System.Collections.Concurrent.ConcurrentQueue<(ServiceStep Step, TimeSpan Timeout)> Timeouts { get; } = new();

        public Task<CommandResult> RunAsync(string service, ServiceStep step, CommandLine command, CommandOptions options, CancellationToken cancellationToken)
        {
            Timeouts.Enqueue((step, options.Timeout));
            if (step == ServiceStep.Ready && Timeouts.Count(t => t.Step == ServiceStep.Ready) == 1)
            {
                time.Advance(TimeSpan.FromSeconds(8));
                return Task.FromResult(new CommandResult(command, 1, "", "not yet", false));
            }
            return _inner.RunAsync(service, step, command, options, cancellationToken);
        }

        public IRunningCommand StartDaemon(string service, CommandLine daemon, CommandOptions options) => _inner.StartDaemon(service, daemon, options);
    }

    [Test]
    public async Task The_twin_fails_a_hung_daemon_at_the_health_check_as_the_real_one_does()
    {
        var manager = new SimulatedServiceManager();
        await manager.ApplyAsync([Engine("1"), Dns("1")], CancellationToken.None);
        Assert.That(await manager.CheckHealthAsync(CancellationToken.None), Is.Empty);
        Assert.That(manager.Break("clamd"), Is.True);
        var problems = await manager.CheckHealthAsync(CancellationToken.None);
        Assert.That(problems, Is.EqualTo(new[] { "clamd: probe `clamdscan --ping 1` failed (exit 1): simulated: not ready" }),
            "the health check runs the ready commands again, and a daemon that does not answer fails them");
    }

    [Test]
    public async Task A_restore_applies_every_service_even_when_one_does_not_start_again()
    {
        var manager = new SimulatedServiceManager(new FakeTimeProvider(Start), new ServiceManagerOptions { ConfigureTimeout = TimeSpan.Zero, HealthSettle = TimeSpan.Zero });
        await manager.ApplyAsync([Firewall("1"), Dns("1"), Engine("1")], CancellationToken.None);
        manager.Processes.RefuseConfigure.Add("dnsmasq");
        var before = manager.Processes.Calls().Count;
        var e = Assert.ThrowsAsync<ServiceException>(() => manager.RestoreAsync([Firewall("2"), Dns("2", configure: "reload-2"), Engine("2")], CancellationToken.None));
        Assert.That(e!.Service, Is.EqualTo("dnsmasq"));
        Assert.That(e.Message, Does.Contain("configure `dnsmasq-ctl reload-2` failed").And.Contain("the other services were applied"));
        Assert.That(manager.Processes.Calls().Skip(before), Is.EqualTo(new[] { "setup firewall", "configure dnsmasq", "stop clamd", "start clamd", "ready clamd" }),
            "the service after the failing one was applied too");
        Assert.That(manager.Status().Select(s => (s.Name, s.Digest)), Is.EqualTo(new[] { ("firewall", "2"), ("dnsmasq", "2"), ("clamd", "2") }));

        // an apply (forward) still stops at the first failure (dnsmasq still refuses): the transaction restores what it had
        before = manager.Processes.Calls().Count;
        Assert.ThrowsAsync<ServiceException>(() => manager.ApplyAsync([Firewall("2"), Dns("3", configure: "reload-3"), Engine("3")], CancellationToken.None));
        Assert.That(manager.Processes.Calls().Skip(before), Is.EqualTo(new[] { "configure dnsmasq" }));
    }

    /// <summary>
    /// The simulated processes, except that a configure command of a service in <see cref="Hang"/> does not finish within
    /// its timeout (a <see cref="CommandException"/>, as the real runner throws), and the stop of a daemon can be held.
    /// </summary>
    private sealed class HangingProcesses : IServiceProcesses
    {
        public SimulatedServiceProcesses Inner { get; } = new();
        public System.Collections.Concurrent.ConcurrentDictionary<string, bool> Hang { get; } = new(StringComparer.Ordinal);

        /// <summary>When set, a daemon's stop signals <see cref="StopEntered"/> and waits for this.</summary>
        public TaskCompletionSource? HoldStop { get; set; }
        public TaskCompletionSource StopEntered { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);

        /// <summary>Services whose probes (health check) do not finish within their timeout.</summary>
        public System.Collections.Concurrent.ConcurrentDictionary<string, bool> HangProbes { get; } = new(StringComparer.Ordinal);

        public Task<CommandResult> RunAsync(string service, ServiceStep step, CommandLine command, CommandOptions options, CancellationToken cancellationToken) =>
            (step == ServiceStep.Configure && Hang.ContainsKey(service)) || (step == ServiceStep.Probe && HangProbes.ContainsKey(service))
                ? throw new CommandException($"`{command}` did not finish within {options.Timeout.TotalSeconds:0.#} s; its process group was killed", command, isTransient: true)
                : Inner.RunAsync(service, step, command, options, cancellationToken);

        public IRunningCommand StartDaemon(string service, CommandLine daemon, CommandOptions options) => new Held(Inner.StartDaemon(service, daemon, options), this);

        private sealed class Held(IRunningCommand inner, HangingProcesses owner) : IRunningCommand
        {
            public CommandLine Command => inner.Command;
            public int ProcessId => inner.ProcessId;
            public Task<int> Exited => inner.Exited;
            public string RecentOutput() => inner.RecentOutput();

            public async Task StopAsync(TimeSpan grace, CancellationToken cancellationToken)
            {
                if (owner.HoldStop is { } hold)
                {
                    owner.StopEntered.TrySetResult();
                    await hold.Task.WaitAsync(TimeSpan.FromSeconds(30), cancellationToken);
                }
                await inner.StopAsync(grace, cancellationToken);
            }

            public ValueTask DisposeAsync() => inner.DisposeAsync();
        }
    }

    [Test]
    public async Task A_probe_that_does_not_finish_in_time_is_a_failed_probe_and_the_other_services_are_still_probed()
    {
        var processes = new HangingProcesses();
        await using var manager = new ServiceManager(processes, new ServiceManagerOptions { HealthSettle = TimeSpan.Zero }, new FakeTimeProvider(Start));
        await manager.ApplyAsync([Firewall("1"), Dns("1"), Engine("1")], CancellationToken.None);
        processes.HangProbes["dnsmasq"] = true;
        var before = processes.Inner.Calls().Count;
        IReadOnlyList<string>? problems = null;
        Assert.DoesNotThrowAsync(async () => problems = await manager.CheckHealthAsync(CancellationToken.None), "a probe timeout is not an exception of the check");
        Assert.That(problems, Has.Count.EqualTo(1));
        Assert.That(problems![0], Does.StartWith("dnsmasq: probe `dnsmasq-ctl ping` failed (").And.Contain("did not finish within"));
        Assert.That(processes.Inner.Calls().Skip(before), Is.EqualTo(new[] { "probe clamd" }), "the service after the hung probe was still probed");

        // cancelled by the caller: the check ends with the cancellation, not with a list
        using var cancelled = new CancellationTokenSource();
        await cancelled.CancelAsync();
        Assert.CatchAsync<OperationCanceledException>(() => manager.CheckHealthAsync(cancelled.Token));
    }

    [Test]
    public async Task A_restore_tries_every_service_even_when_a_configure_command_hangs()
    {
        var processes = new HangingProcesses();
        await using var manager = new ServiceManager(processes, new ServiceManagerOptions { ConfigureTimeout = TimeSpan.Zero, HealthSettle = TimeSpan.Zero },
            new FakeTimeProvider(Start));
        await manager.ApplyAsync([Firewall("1"), Dns("1"), Engine("1")], CancellationToken.None);
        processes.Hang["dnsmasq"] = true;
        var before = processes.Inner.Calls().Count;
        var e = Assert.ThrowsAsync<ServiceException>(() => manager.RestoreAsync([Firewall("2"), Dns("2", configure: "reload-2"), Engine("2")], CancellationToken.None));
        Assert.That(e!.Service, Is.EqualTo("dnsmasq"));
        Assert.That(e.Message, Does.Contain("did not finish within").And.Contain("the other services were applied"));
        Assert.That(processes.Inner.Calls().Skip(before), Is.EqualTo(new[] { "setup firewall", "stop clamd", "start clamd", "ready clamd" }),
            "the service after the hung one was applied too");
        Assert.That(manager.Status().Select(s => (s.Name, s.Digest)), Is.EqualTo(new[] { ("firewall", "2"), ("dnsmasq", "2"), ("clamd", "2") }));
    }

    [Test]
    public async Task A_crash_restart_whose_configure_hangs_is_a_failed_restart_and_its_daemon_is_stopped_before_an_apply_may_start_another()
    {
        var time = new FakeTimeProvider(Start);
        var processes = new HangingProcesses();
        await using var manager = new ServiceManager(processes, new ServiceManagerOptions
        {
            CrashLimit = 2, CrashWindow = TimeSpan.FromHours(1), RestartDelay = TimeSpan.FromSeconds(2), ConfigureTimeout = TimeSpan.Zero, HealthSettle = TimeSpan.Zero,
        }, time);
        await manager.ApplyAsync([Dns("1")], CancellationToken.None);
        processes.Hang["dnsmasq"] = true;
        processes.HoldStop = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        Assert.That(processes.Inner.Crash("dnsmasq"), Is.True);
        // time goes on until the restarted daemon's configure hung and the watcher is stopping that daemon (held here)
        await Until(() =>
        {
            time.Advance(TimeSpan.FromSeconds(1));
            return processes.StopEntered.Task.IsCompleted;
        });
        Assert.That(processes.Inner.Started("dnsmasq"), Is.EqualTo(2));

        processes.Hang.TryRemove("dnsmasq", out _);
        var apply = manager.ApplyAsync([Dns("2", new CommandLine("dnsmasq", "--no-daemon"))], CancellationToken.None);
        await Task.Delay(200);
        Assert.That(apply.IsCompleted, Is.False, "the apply waits until the daemon that never got ready is stopped");
        Assert.That(processes.Inner.Started("dnsmasq"), Is.EqualTo(2), "no second daemon while the first still runs");

        var hold = processes.HoldStop!;
        processes.HoldStop = null;
        hold.TrySetResult();
        await apply.WaitAsync(TimeSpan.FromSeconds(30));
        Assert.That(processes.Inner.Started("dnsmasq"), Is.EqualTo(3));
        Assert.That(manager.Status().Single().State, Is.EqualTo(ServiceState.Running));
    }

    [Test]
    public async Task A_crash_restart_whose_configure_hangs_goes_on_with_the_restart_policy_to_a_crash_loop()
    {
        var time = new FakeTimeProvider(Start);
        var processes = new HangingProcesses();
        await using var manager = new ServiceManager(processes, new ServiceManagerOptions
        {
            CrashLimit = 3, CrashWindow = TimeSpan.FromHours(1), RestartDelay = TimeSpan.FromSeconds(2), ConfigureTimeout = TimeSpan.Zero, HealthSettle = TimeSpan.Zero,
        }, time);
        await manager.ApplyAsync([Dns("1")], CancellationToken.None);
        processes.Hang["dnsmasq"] = true;
        Assert.That(processes.Inner.Crash("dnsmasq"), Is.True);
        // before, the hung configure escaped the watcher and left the entry Restarting for ever
        await Until(() =>
        {
            time.Advance(TimeSpan.FromSeconds(1));
            return manager.Status().Single().State == ServiceState.CrashLoop;
        });
        var status = manager.Status().Single();
        Assert.That(status.Restarts, Is.EqualTo(2));
        Assert.That(status.LastError, Does.Contain("did not finish within"));
        Assert.That(processes.Inner.Started("dnsmasq"), Is.EqualTo(3), "the first daemon and two restarts");
        Assert.That(processes.Inner.Calls().Count(c => c == "stop dnsmasq"), Is.EqualTo(2), "each restarted daemon that never got ready was stopped");
    }

    private static ServiceStatus State(SimulatedServiceManager manager) => manager.Status().Single(s => s.Name == "dnsmasq");

    private static async Task Until(Func<bool> condition)
    {
        for (var i = 0; i < 6000 && !condition(); i++) { await Task.Delay(10); }
        Assert.That(condition(), Is.True, "condition not reached in 60 s");
    }
}
