using Tsunagu.Firmware.Supervision;
using Tsunagu.Hal;
using Tsunagu.Hal.Simulated;
using Tsunagu.Protocol;
using static Tsunagu.Firmware.Supervision.Outcome;
using S = Tsunagu.Firmware.Supervision.StateId;

namespace Tsunagu.UnitTests;

/// <summary>
/// Table-driven tests of the supervisor: each case scripts the outcome every state returns, in order (faults
/// injected), and expects the exact chain of states the machine goes through.
/// </summary>
public class SupervisorTableTests
{
    private sealed class ScriptedState(S id, Queue<Outcome> script, Action exhausted) : IState
    {
        public S Id => id;

        public Task<Outcome> EnterAsync(SupervisorContext context, CancellationToken cancellationToken)
        {
            if (script.Count == 0)
            {
                exhausted();
                cancellationToken.ThrowIfCancellationRequested();
            }
            return Task.FromResult(script.Dequeue());
        }
    }

    /// <summary>Runs the machine over scripted states until a state's script runs out; returns the visited chain.</summary>
    private static async Task<(List<S> Chain, VirtualTime Time)> RunAsync(IReadOnlyList<(S State, Outcome Outcome)> script, SupervisorOptions? options = null)
    {
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(10));
        var queues = Enum.GetValues<S>().ToDictionary(s => s, _ => new Queue<Outcome>());
        foreach (var (state, outcome) in script) { queues[state].Enqueue(outcome); }
        var states = queues.ToDictionary(q => q.Key, q => (IState)new ScriptedState(q.Key, q.Value, cts.Cancel));
        var time = new VirtualTime(new DateTimeOffset(2026, 11, 1, 12, 0, 0, TimeSpan.Zero));
        var unit = new SimulatedUnit(Path.GetTempPath(), CreateEmptyProm());
        await using var supervisor = new Supervisor(unit.Hardware, options ?? new SupervisorOptions(), time, new Random(7), states: states);
        var chain = new List<S> { S.Boot };
        supervisor.StateChanged += c => chain.Add(c.To);
        await supervisor.RunAsync(cts.Token);
        Assert.That(cts.IsCancellationRequested, Is.True, "the run ended because a script ran out, not by a timeout");
        return (chain, time);
    }

    private static string CreateEmptyProm()
    {
        var dir = Path.Combine(Path.GetTempPath(), "tsunagu-prom-empty");
        DirectoryPromPartition.Build(dir, "test-os", new Dictionary<string, string>());
        return dir;
    }

    public sealed record Case(string Name, (S, Outcome)[] Script, S[] Expected, SupervisorOptions? Options = null)
    {
        public override string ToString() => Name;
    }

    private static readonly (S, Outcome)[] FirstBoot =
    [
        (S.Boot, NeedsProvisioning), (S.Provisional, Success), (S.FetchSettings, Success), (S.StoreSettings, Success),
        (S.Disconnect, Success), (S.Main, Success), (S.HostSession, Success), (S.VersionCheck, UpdateAvailable),
        (S.Update, Success), (S.VersionCheck, NothingToDo), (S.ServiceConfig, Success),
    ];

    public static IEnumerable<Case> Cases()
    {
        yield return new Case("first power-on: provision, update, configure, ready", FirstBoot,
        [
            S.Boot, S.Provisional, S.FetchSettings, S.StoreSettings, S.Disconnect, S.Main, S.HostSession, S.VersionCheck,
            S.Update, S.VersionCheck, S.ServiceConfig, S.Ready,
        ]);
        yield return new Case("reboot with stored settings goes straight to Main",
            [(S.Boot, Success), (S.Main, Success), (S.HostSession, Success), (S.VersionCheck, NothingToDo), (S.ServiceConfig, NothingToDo)],
            [S.Boot, S.Main, S.HostSession, S.VersionCheck, S.ServiceConfig, S.Ready]);
        yield return new Case("server unreachable at start: retry provisional until it answers",
            [(S.Boot, NeedsProvisioning), (S.Provisional, Retry), (S.Provisional, Retry), (S.Provisional, Retry), (S.Provisional, Success)],
            [S.Boot, S.Provisional, S.Provisional, S.Provisional, S.Provisional, S.FetchSettings]);
        yield return new Case("main link fails N times: back to provisional",
            [(S.Boot, Success), (S.Main, Retry), (S.Main, Retry), (S.Main, LinkLost), (S.Provisional, Success)],
            [S.Boot, S.Main, S.Main, S.Main, S.Provisional, S.FetchSettings]);
        yield return new Case("wrong secret: refused, gets nothing, asks again later",
            [(S.Boot, NeedsProvisioning), (S.Provisional, Refused), (S.Refused, Success), (S.Provisional, Refused)],
            [S.Boot, S.Provisional, S.Refused, S.Provisional, S.Refused]);
        yield return new Case("data wiped while ready: re-provision from the factory identity",
            [.. FirstBoot, (S.Ready, DataLost), (S.Boot, NeedsProvisioning)],
            [
                S.Boot, S.Provisional, S.FetchSettings, S.StoreSettings, S.Disconnect, S.Main, S.HostSession, S.VersionCheck,
                S.Update, S.VersionCheck, S.ServiceConfig, S.Ready, S.Boot, S.Provisional,
            ]);
        yield return new Case("periodic check from Ready, link lost while ready",
            [(S.Boot, Success), (S.Main, Success), (S.HostSession, Success), (S.VersionCheck, NothingToDo), (S.ServiceConfig, NothingToDo),
             (S.Ready, CheckDue), (S.HostSession, Success), (S.VersionCheck, NothingToDo), (S.ServiceConfig, NothingToDo), (S.Ready, LinkLost)],
            [S.Boot, S.Main, S.HostSession, S.VersionCheck, S.ServiceConfig, S.Ready, S.HostSession, S.VersionCheck, S.ServiceConfig, S.Ready, S.Main]);
        yield return new Case("session expired during version check: authenticate again",
            [(S.Boot, Success), (S.Main, Success), (S.HostSession, Success), (S.VersionCheck, SessionExpired), (S.HostSession, Success)],
            [S.Boot, S.Main, S.HostSession, S.VersionCheck, S.HostSession, S.VersionCheck]);
        yield return new Case("failed update keeps the current pattern and configures services",
            [(S.Boot, Success), (S.Main, Success), (S.HostSession, Success), (S.VersionCheck, UpdateAvailable), (S.Update, Failure)],
            [S.Boot, S.Main, S.HostSession, S.VersionCheck, S.Update, S.ServiceConfig]);
        yield return new Case("variant 2: one link, no disconnect",
            [(S.Boot, NeedsProvisioning), (S.Provisional, Success), (S.FetchSettings, Success), (S.StoreSettings, Success), (S.Disconnect, NothingToDo)],
            [S.Boot, S.Provisional, S.FetchSettings, S.StoreSettings, S.Disconnect, S.HostSession]);
    }

    [TestCaseSource(nameof(Cases))]
    public async Task Chain_of_states(Case c)
    {
        var (chain, _) = await RunAsync(c.Script, c.Options);
        Assert.That(chain, Is.EqualTo(c.Expected));
    }

    [Test]
    public async Task Retries_back_off_from_a_floor_with_jitter_under_the_cap()
    {
        var options = new SupervisorOptions { BackoffBase = TimeSpan.FromSeconds(1), BackoffCap = TimeSpan.FromSeconds(8) };
        var script = new List<(S, Outcome)> { (S.Boot, NeedsProvisioning) };
        script.AddRange(Enumerable.Repeat((S.Provisional, Retry), 12));
        script.Add((S.Provisional, Success));
        var (_, time) = await RunAsync(script, options);
        Assert.That(time.Delays, Has.Count.EqualTo(12));
        for (var i = 0; i < time.Delays.Count; i++)
        {
            // the floor (BackoffBase) plus jitter of up to base * 2^i, never past the cap
            var ceiling = TimeSpan.FromSeconds(Math.Min(8, 1 + Math.Min(8, Math.Pow(2, i))));
            Assert.That(time.Delays[i], Is.GreaterThanOrEqualTo(options.BackoffBase).And.LessThanOrEqualTo(ceiling), $"retry {i}");
        }
        Assert.That(time.Delays.Distinct().Count(), Is.GreaterThan(6), "jittered, not a fixed schedule");
    }

    [Test]
    public async Task Every_outcome_that_tries_again_waits_a_floor_plus_jitter()
    {
        // a refused token, a lost link and lost data each lead back to work the unit has done before: none may be immediate
        var (chain, time) = await RunAsync(
        [
            (S.Boot, Success), (S.Main, Success), (S.HostSession, Success), (S.VersionCheck, SessionExpired), (S.HostSession, Success),
            (S.VersionCheck, NothingToDo), (S.ServiceConfig, NothingToDo), (S.Ready, LinkLost), (S.Main, Success), (S.HostSession, Success),
            (S.VersionCheck, NothingToDo), (S.ServiceConfig, NothingToDo), (S.Ready, DataLost), (S.Boot, Success),
        ]);
        Assert.That(chain, Is.EqualTo(new[]
        {
            S.Boot, S.Main, S.HostSession, S.VersionCheck, S.HostSession, S.VersionCheck, S.ServiceConfig, S.Ready, S.Main, S.HostSession,
            S.VersionCheck, S.ServiceConfig, S.Ready, S.Boot, S.Main,
        }));
        var floor = new SupervisorOptions().BackoffBase;
        Assert.That(time.Delays, Has.Count.EqualTo(3), "SessionExpired, LinkLost and DataLost wait; nothing else does");
        Assert.That(time.Delays, Has.All.InRange(floor, floor * 2), "the floor plus the first jitter");
        Assert.That(Enum.GetValues<Outcome>().Where(o => Transitions.WaitAfter(o) != Wait.None),
            Is.EquivalentTo(new[] { Retry, LinkLost, DataLost, SessionExpired }));
    }

    [Test]
    public async Task A_lost_link_waits_and_keeps_growing_the_backoff_of_the_failures_before_it()
    {
        var options = new SupervisorOptions { BackoffBase = TimeSpan.FromSeconds(1), BackoffCap = TimeSpan.FromSeconds(60) };
        var (chain, time) = await RunAsync(
        [
            (S.Boot, Success), (S.Main, Retry), (S.Main, Retry), (S.Main, LinkLost),
            (S.Provisional, Retry), (S.Provisional, Retry), (S.Provisional, Retry), (S.Provisional, Success),
        ], options);
        Assert.That(chain, Is.EqualTo(new[] { S.Boot, S.Main, S.Main, S.Main, S.Provisional, S.Provisional, S.Provisional, S.Provisional, S.FetchSettings }));
        Assert.That(time.Delays, Has.Count.EqualTo(6), "every failure waited, the lost link too");
        for (var i = 0; i < time.Delays.Count; i++)
        {
            var ceiling = TimeSpan.FromSeconds(Math.Min(60, 1 + Math.Pow(2, i)));
            Assert.That(time.Delays[i], Is.InRange(options.BackoffBase, ceiling), $"failure {i + 1}: floor plus jitter of up to base * 2^{i}");
        }
    }

    [Test]
    public void Table_has_no_duplicate_rows_and_every_state_can_retry()
    {
        var pairs = Transitions.Table.Select(t => (t.From, t.On)).ToList();
        Assert.That(pairs, Is.Unique);
        foreach (var state in Enum.GetValues<S>())
        {
            // the runner turns an unexpected I/O or HAL error of any state into Retry
            Assert.That(() => Transitions.Next(state, Retry), Throws.Nothing, $"{state} has no Retry row");
            Assert.That(Transitions.Next(state, DataLost), Is.EqualTo(S.Boot));
        }
    }

    [Test]
    public void A_pair_not_in_the_table_is_a_bug_that_names_itself()
    {
        var e = Assert.Throws<InvalidOperationException>(() => Transitions.Next(S.Boot, UpdateAvailable));
        Assert.That(e!.Message, Does.Contain("Boot").And.Contain("UpdateAvailable"));
    }

    [TestCase(5, 0.9, 0.9, 14, false, true)]
    [TestCase(4, 0.1, 0.1, 14, false, true)]
    [TestCase(4, 0.9, 0.1, 14, false, false)]
    [TestCase(4, 0.1, 0.9, 14, false, false)]
    [TestCase(3, 0.1, 0.1, 14, false, false)]
    [TestCase(3, 0.9, 0.9, 3, false, true)]
    [TestCase(2, 0.0, 0.0, 12, false, false)]
    [TestCase(2, 0.9, 0.9, 3, false, true)]
    [TestCase(1, 0.0, 0.0, 4, false, false)]
    [TestCase(1, 0.0, 0.0, 12, true, true)]
    [TestCase(4, 0.9, 0.9, 14, true, true)]
    public void Importance_decides_when(int importance, double cpu, double wan, int hour, bool forced, bool expected)
    {
        var now = new DateTimeOffset(2026, 11, 1, hour, 0, 0, TimeSpan.Zero);
        var policy = new UpdatePolicy(0.5, 0.5, 2, 5, MaintenanceStartHour: 3, MaintenanceEndHour: 4);
        Assert.That(ImportancePolicy.MayRunNow(importance, new(cpu, wan), policy, now, forced), Is.EqualTo(expected));
        Assert.That(ImportancePolicy.Decide(importance, new(cpu, wan), policy, now, forced) is null, Is.EqualTo(expected), "Decide agrees and explains");
    }

    [TestCase(23, 22, 4, true)]
    [TestCase(3, 22, 4, true)]
    [TestCase(4, 22, 4, false)]
    [TestCase(12, 22, 4, false)]
    [TestCase(2, 2, 5, true)]
    public void Low_utilisation_window_wraps_past_midnight(int hour, int start, int end, bool inside) =>
        Assert.That(ImportancePolicy.InWindow(hour, start, end), Is.EqualTo(inside));

    [Test]
    public void Backoff_honours_a_server_retry_after_as_a_floor_but_not_past_the_cap()
    {
        var backoff = new Backoff(TimeSpan.FromMilliseconds(100), TimeSpan.FromSeconds(5), new Random(1));
        var first = backoff.Next(TimeSpan.FromSeconds(3));
        Assert.That(first, Is.GreaterThanOrEqualTo(TimeSpan.FromSeconds(3)).And.LessThanOrEqualTo(TimeSpan.FromSeconds(3.1)), "floor plus jitter of up to base");
        Assert.That(backoff.Next(TimeSpan.FromSeconds(60)), Is.EqualTo(TimeSpan.FromSeconds(5)));
        backoff.Reset();
        Assert.That(backoff.Attempt, Is.Zero);
    }

    [Test]
    public void Options_are_validated_at_start()
    {
        var unit = new SimulatedUnit(Path.GetTempPath(), CreateEmptyProm());
        Assert.Throws<ArgumentException>(() => _ = new Supervisor(unit.Hardware, new SupervisorOptions { CheckJitter = 1.5 }));
        Assert.Throws<ArgumentException>(() => _ = new Supervisor(unit.Hardware, new SupervisorOptions { MainLinkFailureLimit = 0 }));
    }
}
