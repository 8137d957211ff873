using Tsunagu.Firmware.Supervision;
using Tsunagu.Hal;
using Tsunagu.Hal.Simulated;
using static Tsunagu.Firmware.Supervision.Outcome;
using S = Tsunagu.Firmware.Supervision.StateId;

namespace Tsunagu.UnitTests.Supervision;

/// <summary>
/// The supervisor's loop over scripted states: each case scripts the outcome every state returns, in order (faults
/// injected), and expects the exact chain of states the machine goes through and the waits between them.
/// </summary>
public class SupervisorTests
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

    /// <summary>A state that runs <paramref name="enter"/> instead of a script (a fault, a press of the reset button).</summary>
    private sealed class ActingState(S id, Func<CancellationToken, Task<Outcome>> enter) : IState
    {
        public S Id => id;
        public Task<Outcome> EnterAsync(SupervisorContext context, CancellationToken cancellationToken) => enter(cancellationToken);
    }

    private sealed record Run(List<S> Chain, List<StateChange> Changes, VirtualTime Time, SupervisorContext Context);

    /// <summary>
    /// Runs the machine over scripted states until a state's script runs out; returns the visited chain. <paramref name="act"/>
    /// may replace states (given the unit and a way to end the run).
    /// </summary>
    private static async Task<Run> RunAsync(IReadOnlyList<(S State, Outcome Outcome)> script, SupervisorOptions? options = null,
        Func<SimulatedUnit, Action, IEnumerable<IState>>? act = null, TimeProvider? clock = null, Action<SimulatedUnit, StateChange>? changed = null)
    {
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(10));
        var queues = Enum.GetValues<S>().ToDictionary(s => s, _ => new Queue<Outcome>());
        foreach (var (state, outcome) in script) { queues[state].Enqueue(outcome); }
        var states = queues.ToDictionary(q => q.Key, q => (IState)new ScriptedState(q.Key, q.Value, cts.Cancel));
        var time = new VirtualTime(new DateTimeOffset(2026, 11, 1, 12, 0, 0, TimeSpan.Zero));
        var unit = new SimulatedUnit(Path.GetTempPath(), CreateEmptyProm());
        foreach (var state in act?.Invoke(unit, cts.Cancel) ?? []) { states[state.Id] = state; }
        await using var supervisor = new Supervisor(unit.Hardware, options ?? new SupervisorOptions(), clock ?? time, new Random(7), states: states);
        var chain = new List<S> { S.Boot };
        var changes = new List<StateChange>();
        supervisor.StateChanged += c => { chain.Add(c.To); changes.Add(c); changed?.Invoke(unit, c); };
        await supervisor.RunAsync(cts.Token);
        Assert.That(cts.IsCancellationRequested, Is.True, "the run ended because a script ran out, not by a timeout");
        return new Run(chain, changes, time, supervisor.Context);
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
        yield return new Case("periodic check from Ready needs the full exchange, link lost while ready",
            [(S.Boot, Success), (S.Main, Success), (S.HostSession, Success), (S.VersionCheck, NothingToDo), (S.ServiceConfig, NothingToDo),
             (S.Ready, CheckDue), (S.SteadyCheck, FullCheckDue), (S.HostSession, Success), (S.VersionCheck, NothingToDo), (S.ServiceConfig, NothingToDo), (S.Ready, LinkLost)],
            [S.Boot, S.Main, S.HostSession, S.VersionCheck, S.ServiceConfig, S.Ready, S.SteadyCheck, S.HostSession, S.VersionCheck, S.ServiceConfig, S.Ready, S.Main]);
        yield return new Case("periodic checks that find nothing to do go from Ready to the steady check and back",
            [(S.Boot, Success), (S.Main, Success), (S.HostSession, Success), (S.VersionCheck, NothingToDo), (S.ServiceConfig, NothingToDo),
             (S.Ready, CheckDue), (S.SteadyCheck, NothingToDo), (S.Ready, CheckDue), (S.SteadyCheck, NothingToDo), (S.Ready, LinkLost)],
            [S.Boot, S.Main, S.HostSession, S.VersionCheck, S.ServiceConfig, S.Ready, S.SteadyCheck, S.Ready, S.SteadyCheck, S.Ready, S.Main]);
        yield return new Case("a steady check without an answer: the same steady check after the retry wait, the full exchange only when refused",
            [(S.Boot, Success), (S.Main, Success), (S.HostSession, Success), (S.VersionCheck, NothingToDo), (S.ServiceConfig, NothingToDo),
             (S.Ready, CheckDue), (S.SteadyCheck, Retry), (S.SteadyCheck, Retry), (S.SteadyCheck, FullCheckDue), (S.HostSession, Success)],
            [S.Boot, S.Main, S.HostSession, S.VersionCheck, S.ServiceConfig, S.Ready, S.SteadyCheck, S.SteadyCheck, S.SteadyCheck, S.HostSession, S.VersionCheck]);
        yield return new Case("session expired during version check: authenticate again",
            [(S.Boot, Success), (S.Main, Success), (S.HostSession, Success), (S.VersionCheck, SessionExpired), (S.HostSession, Success)],
            [S.Boot, S.Main, S.HostSession, S.VersionCheck, S.HostSession, S.VersionCheck]);
        yield return new Case("failed update keeps the current pattern and configures services",
            [(S.Boot, Success), (S.Main, Success), (S.HostSession, Success), (S.VersionCheck, UpdateAvailable), (S.Update, Failure)],
            [S.Boot, S.Main, S.HostSession, S.VersionCheck, S.Update, S.ServiceConfig]);
        yield return new Case("provisional link lost during authentication: provisional again",
            [(S.Boot, NeedsProvisioning), (S.Provisional, LinkLost), (S.Provisional, SessionExpired), (S.Provisional, Success)],
            [S.Boot, S.Provisional, S.Provisional, S.Provisional, S.FetchSettings]);
        yield return new Case("host authentication answered invalid-token: authenticate again",
            [(S.Boot, Success), (S.Main, Success), (S.HostSession, SessionExpired), (S.HostSession, Success)],
            [S.Boot, S.Main, S.HostSession, S.HostSession, S.VersionCheck]);
        yield return new Case("server errors during the update: link, token, refusal",
            [(S.Boot, Success), (S.Main, Success), (S.HostSession, Success), (S.VersionCheck, UpdateAvailable), (S.Update, SessionExpired),
             (S.HostSession, Success), (S.VersionCheck, UpdateAvailable), (S.Update, LinkLost), (S.Main, Success), (S.HostSession, Success),
             (S.VersionCheck, UpdateAvailable), (S.Update, Refused), (S.Refused, Success)],
            [S.Boot, S.Main, S.HostSession, S.VersionCheck, S.Update, S.HostSession, S.VersionCheck, S.Update, S.Main, S.HostSession,
             S.VersionCheck, S.Update, S.Refused, S.Provisional]);
        yield return new Case("variant 2: one link, no disconnect",
            [(S.Boot, NeedsProvisioning), (S.Provisional, Success), (S.FetchSettings, Success), (S.StoreSettings, Success), (S.Disconnect, NothingToDo)],
            [S.Boot, S.Provisional, S.FetchSettings, S.StoreSettings, S.Disconnect, S.HostSession]);
    }

    [TestCaseSource(nameof(Cases))]
    public async Task Chain_of_states(Case c)
    {
        var run = await RunAsync(c.Script, c.Options);
        Assert.That(run.Chain, Is.EqualTo(c.Expected));
        Assert.That(run.Changes, Has.All.Matches<StateChange>(ch => (ch.Delay > TimeSpan.Zero) == (Transitions.Find(ch.From, ch.Outcome).Wait != Wait.None)),
            "each transition waited exactly when its row says so");
    }

    /// <summary>
    /// The shortest chain of outcomes from <see cref="S.Boot"/> to <paramref name="target"/> through rows that wait nothing,
    /// entering no state twice (so each state's script is consumed in order).
    /// </summary>
    private static List<(S, Outcome)> PathTo(S target)
    {
        var paths = new Dictionary<S, List<(S, Outcome)>> { [S.Boot] = [] };
        var frontier = new Queue<S>([S.Boot]);
        while (frontier.Count > 0 && !paths.ContainsKey(target))
        {
            var from = frontier.Dequeue();
            foreach (var row in Transitions.Table.Where(t => t.From == from && t.Wait == Wait.None && !paths.ContainsKey(t.To)))
            {
                paths[row.To] = [.. paths[from], (row.From, row.On)];
                frontier.Enqueue(row.To);
            }
        }
        return paths.TryGetValue(target, out var path) ? path : throw new InvalidOperationException($"{target} cannot be reached from Boot");
    }

    public static IEnumerable<TestCaseData> Rows() =>
        Transitions.Table.Select(row => new TestCaseData(row).SetArgDisplayNames($"{row.From} --{row.On}--> {row.To}"));

    [TestCaseSource(nameof(Rows))]
    public async Task Every_row_is_what_the_supervisor_does(Transition row)
    {
        // reach the row's state, give its outcome there, and stop in the next state: the supervisor adds no rule of its own
        var run = await RunAsync([.. PathTo(row.From), (row.From, row.On)]);
        var last = run.Changes[^1];
        Assert.That((last.From, last.Outcome, last.To), Is.EqualTo((row.From, row.On, row.To)));
        var floor = new SupervisorOptions().BackoffBase;
        Assert.That(last.Delay, row.Wait == Wait.None ? Is.EqualTo(TimeSpan.Zero) : Is.InRange(floor, floor * 2),
            $"the row waits {row.Wait}: nothing, or the first wait of a backoff (every row before it waited nothing)");
        Assert.That(run.Changes.SkipLast(1).Select(c => c.Delay), Has.All.EqualTo(TimeSpan.Zero), "the way there waited nothing");
    }

    [Test]
    public async Task Retries_back_off_from_a_floor_with_jitter_under_the_cap()
    {
        var options = new SupervisorOptions { BackoffBase = TimeSpan.FromSeconds(1), BackoffCap = TimeSpan.FromSeconds(8) };
        var script = new List<(S, Outcome)> { (S.Boot, NeedsProvisioning) };
        script.AddRange(Enumerable.Repeat((S.Provisional, Retry), 12));
        script.Add((S.Provisional, Success));
        var time = (await RunAsync(script, options)).Time;
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
        var (chain, _, time, _) = await RunAsync(
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
        Assert.That(Transitions.Table.Where(t => t.Wait != Wait.None).Select(t => t.On).Distinct(),
            Is.EquivalentTo(new[] { Retry, LinkLost, DataLost, SessionExpired, Fault, IspRefused }), "the outcomes that try again, and only they, wait");
    }

    [Test]
    public async Task A_lost_link_waits_and_keeps_growing_the_backoff_of_the_failures_before_it()
    {
        var options = new SupervisorOptions { BackoffBase = TimeSpan.FromSeconds(1), BackoffCap = TimeSpan.FromSeconds(60) };
        var (chain, _, time, _) = await RunAsync(
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
    public async Task An_exception_a_state_did_not_map_is_a_fault_recorded_and_retried_after_the_backoff()
    {
        var entries = 0;
        var run = await RunAsync([(S.Boot, Success)], act: (_, _) =>
        [
            new ActingState(S.Main, _ => ++entries == 1 ? throw new InvalidOperationException("a bug") : Task.FromResult(Success)),
        ]);
        Assert.That(run.Chain, Is.EqualTo(new[] { S.Boot, S.Main, S.Main, S.HostSession }));
        var fault = run.Changes.Single(c => c.Outcome == Fault);
        Assert.That((fault.From, fault.To), Is.EqualTo((S.Main, S.Main)));
        var floor = new SupervisorOptions().BackoffBase;
        Assert.That(fault.Delay, Is.InRange(floor, floor * 2), "the retry backoff");
        Assert.That(run.Context.LastError, Does.Contain("Main: unexpected InvalidOperationException").And.Contain("a bug"));
    }

    /// <summary>Ready (the state a unit spends its life in) presses the reset button, then waits until it is stopped.</summary>
    private static ActingState PressingReady(SimulatedUnit unit) => new(S.Ready, async ct =>
    {
        unit.Reset.Press();
        await Task.Delay(Timeout.InfiniteTimeSpan, ct);
        return CheckDue;
    });

    private static readonly (S, Outcome)[] ToReady =
        [(S.Boot, Success), (S.Main, Success), (S.HostSession, Success), (S.VersionCheck, NothingToDo), (S.ServiceConfig, NothingToDo)];

    [Test]
    public async Task A_long_press_stops_the_state_and_resets_the_unit_each_time_it_is_held()
    {
        var run = await RunAsync([.. ToReady, (S.FactoryReset, Success), .. ToReady, (S.FactoryReset, Success), (S.Boot, NeedsProvisioning)],
            act: (unit, _) => [PressingReady(unit)]);
        S[] toReady = [S.Main, S.HostSession, S.VersionCheck, S.ServiceConfig, S.Ready];
        Assert.That(run.Chain, Is.EqualTo(new[] { S.Boot }.Concat(toReady).Append(S.FactoryReset).Append(S.Boot)
            .Concat(toReady).Append(S.FactoryReset).Append(S.Boot).Append(S.Provisional)), "the button is watched again after a reset");
        Assert.That(run.Changes.Where(c => c.Outcome == ResetPressed).Select(c => (c.From, c.To, c.Delay)),
            Is.EqualTo(Enumerable.Repeat((S.Ready, S.FactoryReset, TimeSpan.Zero), 2)));
    }

    [Test]
    public async Task A_long_press_during_a_backoff_wait_resets_without_entering_the_next_state()
    {
        // the fake clock never moves: the backoff wait after the retry lasts until the press ends it
        var clock = new Microsoft.Extensions.Time.Testing.FakeTimeProvider(new DateTimeOffset(2026, 11, 1, 12, 0, 0, TimeSpan.Zero));
        var mainEntries = 0;
        var run = await RunAsync([(S.Boot, Success), (S.FactoryReset, Success)], clock: clock,
            act: (_, _) => [new ActingState(S.Main, _ => Task.FromResult(++mainEntries == 1 ? Retry : throw new AssertionException("Main entered again")))],
            changed: (unit, c) => { if (c.Outcome == Retry) { unit.Reset.Press(); } });
        Assert.That(run.Chain, Is.EqualTo(new[] { S.Boot, S.Main, S.Main, S.FactoryReset, S.Boot }));
        Assert.That(mainEntries, Is.EqualTo(1), "the state waited for was not entered");
        Assert.That(run.Changes[2].Outcome, Is.EqualTo(ResetPressed));
    }

    [Test]
    public async Task A_factory_reset_that_fails_is_tried_again_after_the_backoff_not_given_up()
    {
        var resets = 0;
        var run = await RunAsync([.. ToReady, (S.Boot, NeedsProvisioning)], act: (unit, _) =>
        [
            PressingReady(unit),
            new ActingState(S.FactoryReset, _ => ++resets == 1 ? throw new IOException("data busy") : Task.FromResult(Success)),
        ]);
        Assert.That(run.Chain.Skip(6), Is.EqualTo(new[] { S.FactoryReset, S.FactoryReset, S.Boot, S.Provisional }));
        Assert.That(run.Changes.Single(c => c.Outcome == Fault).Delay, Is.GreaterThan(TimeSpan.Zero));
        Assert.That(resets, Is.EqualTo(2));
    }
}
