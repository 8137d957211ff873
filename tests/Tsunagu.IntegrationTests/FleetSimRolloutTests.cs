using System.Text.Json;
using Tsunagu.Cli.Fleet;
using Tsunagu.Server.Fleet.Rollouts;

namespace Tsunagu.IntegrationTests;

/// <summary>
/// The fleet simulator's rollout scenarios (<c>tsunagu fleetsim --scenario rollout,rollout-pause</c>, what
/// <c>make rollout-bench</c> runs at scale) on a small fleet: their invariants, so the scenarios keep working.
/// </summary>
[NonParallelizable]
public class FleetSimRolloutTests
{
    private string _directory = null!;

    [SetUp]
    public void SetUp() => _directory = TempDirectories.Create("fleetsim-rollout");

    [TearDown]
    public void TearDown() => Directory.Delete(_directory, recursive: true);

    [Test]
    public async Task A_three_wave_rollout_opens_each_wave_in_order_and_one_that_fails_health_pauses_with_no_unit_beyond_its_open_wave()
    {
        const int units = 30;
        var messages = new List<string>();
        await using var simulation = new FleetSimulation(new FleetSimSettings
        {
            Units = units,
            Scenarios = [FleetScenarios.Rollout, FleetScenarios.RolloutPause],
            DataDirectory = Path.Combine(_directory, "sim"),
            Waves = "10%,30%,100%",
            FailHealthPercent = 20,
            RolloutTickSeconds = 0.2,
            HealthWindow = TimeSpan.FromSeconds(2),
            ScenarioTimeout = TimeSpan.FromSeconds(90),
        }, m => { lock (messages) { messages.Add(m); } });
        var reports = await simulation.RunAsync(CancellationToken.None);
        var log = string.Join('\n', messages);
        Assert.That(reports.Select(r => r.Scenario), Is.EqualTo(new[] { FleetScenarios.FirstBoot, FleetScenarios.Rollout, FleetScenarios.RolloutPause }), log);

        // every unit healthy: the three waves open in order, the rollout completes, every unit runs the new pattern
        var moved = reports[1];
        var rollout = moved.Rollout!;
        Assert.That(moved.AllCompleted, Is.True, log);
        Assert.That(rollout.State, Is.EqualTo(RolloutStates.Completed));
        Assert.That(rollout.WaveSizes, Is.EqualTo(new[] { 3, 9, 18 }), "10% and 30% of 30 units, the rest last");
        Assert.That(rollout.WaveOpenedSeconds, Has.Count.EqualTo(3), "every wave opened");
        Assert.That(rollout.EndSeconds, Is.Not.Null, "the rollout.complete audit entry was found");
        Assert.That(rollout.AtTarget, Is.EqualTo(units), "every unit runs the new pattern");
        Assert.That(rollout.DecisionsApplied, Is.EqualTo(3), "two wave openings and the completion, each decided once");
        Assert.That(rollout.Passes, Is.GreaterThanOrEqualTo(3));
        Assert.That(rollout.BeyondOpenWaves, Is.Zero);
        Assert.That(rollout.StrayAtTarget, Is.Zero);
        // no unit loops: one update is a fixed sequence of requests (check, session, download, report, probe, ready...)
        Assert.That(moved.MaxRequestsPerUnit, Is.LessThanOrEqualTo(2 * 9 + 2 * moved.MaxRetriesPerUnit), "a unit made far more requests than one update takes: " + log);

        // a fifth of each wave fails health: the error threshold pauses the rollout in wave 1, no later unit even tries
        var stopped = reports[2];
        var paused = stopped.Rollout!;
        Assert.That(stopped.AllCompleted, Is.True, log);
        Assert.That(paused.State, Is.EqualTo(RolloutStates.Paused));
        Assert.That(paused.Reason, Does.Contain("error threshold"));
        Assert.That(paused.FromPattern, Is.EqualTo(rollout.ToPattern), "the second rollout starts where the first left the fleet");
        Assert.That(paused.OpenWaves, Is.EqualTo(1), "wave 1's failing unit holds it until it reports, then its failure pauses the rollout");
        Assert.That(paused.WaveOpenedSeconds, Has.Count.EqualTo(1));
        Assert.That(paused.FailingUnits, Is.EqualTo(1 + 2 + 4), "20% of each wave of 3, 9 and 18, rounded up");
        Assert.That(paused.FailedReports, Is.EqualTo(1), "only wave 1's failing unit tried and failed");
        Assert.That(paused.BeyondOpenWaves, Is.Zero, "no unit of waves 2 and 3 was offered the update, reported an install or left the old pattern");
        // a healthy wave-1 unit not yet offered when the rollout paused is refused from then on: 0 to 2 of them installed,
        // and only they
        Assert.That(paused.AtTarget, Is.InRange(0, 2), "at most wave 1's two healthy units installed");
        Assert.That(paused.StrayAtTarget, Is.Zero, "every unit on the new pattern is a healthy unit of wave 1");
        Assert.That(paused.ThresholdToPauseMs, Is.Not.Null, "the failure report that reached the threshold and the pause were both found");
        Assert.That(paused.DecisionsApplied, Is.EqualTo(1), "the pause, decided once");
        Assert.That(paused.IdlePassCpuMs, Is.Not.Null);
        Assert.That(stopped.MaxRequestsPerUnit, Is.LessThanOrEqualTo(2 * 9 + 2 * stopped.MaxRetriesPerUnit), log);
    }

    [Test]
    public async Task A_rollout_pause_whose_failures_cannot_reach_the_error_threshold_ends_when_the_rollout_completes_as_not_done()
    {
        // 10 units in waves of 5: one failing unit per wave (20%), an error threshold of 100% and a success threshold of
        // 50%: the rollout completes instead of pausing, and the scenario says so at once rather than waiting for its timeout
        var messages = new List<string>();
        await using var simulation = new FleetSimulation(new FleetSimSettings
        {
            Units = 10,
            Scenarios = [FleetScenarios.RolloutPause],
            DataDirectory = Path.Combine(_directory, "sim"),
            Waves = "50%,100%",
            SuccessPercent = 50,
            ErrorPercent = 100,
            FailHealthPercent = 20,
            RolloutTickSeconds = 0.2,
            HealthWindow = TimeSpan.FromSeconds(1),
            ScenarioTimeout = TimeSpan.FromSeconds(600),
        }, m => { lock (messages) { messages.Add(m); } });
        var reports = await simulation.RunAsync(CancellationToken.None);
        var log = string.Join('\n', messages);
        Assert.That(reports.Select(r => r.Scenario), Is.EqualTo(new[] { FleetScenarios.FirstBoot, FleetScenarios.RolloutPause }), log);
        var report = reports[1];
        Assert.That(report.Rollout!.State, Is.EqualTo(RolloutStates.Completed), log);
        Assert.That(report.AllCompleted, Is.False, "a rollout-pause that did not pause is not done");
        Assert.That(report.Rollout.Reason, Does.StartWith("did not pause"), log);
        Assert.That(log, Does.Contain("it did not pause"), "ended on the completion, not on the timeout");
        Assert.That(report.Rollout.FailingUnits, Is.EqualTo(2));
    }

    [Test]
    public async Task With_the_units_in_worker_processes_the_rollouts_count_every_unit_once_and_keep_their_invariants()
    {
        // 24 units in 2 worker processes (tsunagu fleetsim --worker) against the server in this one: what make rollout-bench
        // does past 4,000 units. The counts come back from both workers, each unit once, in the order of the plan's MACs
        const int units = 24;
        var messages = new List<string>();
        await using var simulation = new FleetSimulation(new FleetSimSettings
        {
            Units = units,
            Workers = 2,
            Scenarios = [FleetScenarios.Rollout, FleetScenarios.RolloutPause],
            DataDirectory = Path.Combine(_directory, "sim"),
            Waves = "25%,100%",
            FailHealthPercent = 20,
            RolloutTickSeconds = 0.2,
            HealthWindow = TimeSpan.FromSeconds(2),
            ScenarioTimeout = TimeSpan.FromSeconds(120),
        }, m => { lock (messages) { messages.Add(m); } });
        var reports = await simulation.RunAsync(CancellationToken.None);
        var log = string.Join('\n', messages);
        Assert.That(reports.Select(r => r.Scenario), Is.EqualTo(new[] { FleetScenarios.FirstBoot, FleetScenarios.Rollout, FleetScenarios.RolloutPause }), log);

        var boot = reports[0];
        Assert.That((boot.Units, boot.Completed), Is.EqualTo((units, units)), log);
        Assert.That(boot.Note, Does.StartWith("2 worker processes"));
        Assert.That(log, Does.Contain("worker 0: ").And.Contain("worker 1: "), "both workers ran units");

        var moved = reports[1];
        var rollout = moved.Rollout!;
        Assert.That(moved.AllCompleted, Is.True, log);
        Assert.That(rollout.WaveSizes, Is.EqualTo(new[] { 6, 18 }));
        Assert.That(rollout.AtTarget, Is.EqualTo(units), "every unit of both workers runs the new pattern");
        Assert.That((rollout.DuplicateReports, rollout.Unaccounted), Is.EqualTo((0, 0)), "nothing lost or duplicated");
        Assert.That(rollout.UnitsByRequests!.Values.Sum(), Is.EqualTo(units), "each unit counted once");
        Assert.That(rollout.UnitsByRequests.Keys.Min(), Is.GreaterThan(0), "every unit made requests, whichever worker holds it");
        Assert.That(moved.Requests, Is.EqualTo(rollout.RequestsByRoute!.Values.Sum()), "the routes add up to the requests");
        Assert.That(rollout.RequestsByRoute[Tsunagu.Protocol.Routes.UpdateReport], Is.EqualTo(units), "one update report per unit");
        Assert.That(rollout.WorkerCpuSeconds, Is.GreaterThan(0));
        Assert.That(rollout.Workers!.Select(w => w.Units), Is.EqualTo(new[] { 12, 12 }));
        Assert.That(moved.MaxRequestsPerUnit, Is.LessThanOrEqualTo(2 * 9 + 2 * moved.MaxRetriesPerUnit), log);

        var stopped = reports[2];
        var paused = stopped.Rollout!;
        Assert.That(stopped.AllCompleted, Is.True, log);
        Assert.That(paused.State, Is.EqualTo(RolloutStates.Paused));
        Assert.That(paused.FailingUnits, Is.EqualTo(2 + 4), "20% of waves of 6 and 18, rounded up, told to the worker that holds each");
        Assert.That((paused.BeyondOpenWaves, paused.StrayAtTarget, paused.DuplicateReports), Is.EqualTo((0, 0, 0)));
        Assert.That(paused.FailedReports, Is.GreaterThan(0), "a failing unit of wave 1 failed its health check in its worker");
    }

    private static readonly JsonSerializerOptions Web = new(JsonSerializerDefaults.Web);

    private static FleetCounts Counts(params string[] macs) => new(macs, new long[macs.Length], new long[macs.Length], new long[macs.Length], 0,
        new Dictionary<string, long>(), new Dictionary<string, long>(), []);

    [Test]
    public void A_worker_s_counts_of_other_units_or_of_the_wrong_length_are_refused_naming_the_worker()
    {
        string[] range = [SimulatedFleet.MacFor(3), SimulatedFleet.MacFor(4)];
        Assert.DoesNotThrow(() => FleetCounts.CheckPart(1, Counts(range), range));
        var other = Assert.Throws<FleetSimulationException>(() => FleetCounts.CheckPart(1, Counts(range[0], SimulatedFleet.MacFor(5)), range))!;
        Assert.That(other.Message, Does.StartWith("worker 1 ").And.Contain(SimulatedFleet.MacFor(5)).And.Contain(range[1]));
        var twice = Assert.Throws<FleetSimulationException>(() => FleetCounts.CheckPart(2, Counts(range[0], range[0]), range))!;
        Assert.That(twice.Message, Does.StartWith("worker 2 "));
        var missing = Assert.Throws<FleetSimulationException>(() => FleetCounts.CheckPart(0, Counts(range[0]), range))!;
        Assert.That(missing.Message, Does.StartWith("worker 0 ").And.Contain("1 unit(s), its range has 2"));
        var shortArray = Assert.Throws<FleetSimulationException>(() => FleetCounts.CheckPart(3, Counts(range) with { Retries = [0] }, range))!;
        Assert.That(shortArray.Message, Is.EqualTo("worker 3 sent 1 retries counts for its 2 unit(s)"));
        var nullField = Assert.Throws<FleetSimulationException>(() => FleetCounts.CheckPart(4, Counts(range) with { Requests = null! }, range))!;
        Assert.That(nullField.Message, Does.StartWith("worker 4 "));

        string[] plan = [.. range, SimulatedFleet.MacFor(5)];
        Assert.DoesNotThrow(() => FleetCounts.CheckMerged(FleetCounts.Merge([Counts(range), Counts(plan[2])]), plan));
        Assert.Throws<FleetSimulationException>(() => FleetCounts.CheckMerged(FleetCounts.Merge([Counts(plan[2]), Counts(range)]), plan), "another order");
        Assert.Throws<FleetSimulationException>(() => FleetCounts.CheckMerged(FleetCounts.Merge([Counts(range), Counts(range)]), plan), "a unit twice");
    }

    [Test]
    public void A_worker_s_reply_of_another_command_not_json_an_error_or_of_another_shape_is_refused_naming_the_worker()
    {
        static bool Connected(JsonElement r) => r.GetProperty("connected").GetBoolean();
        Assert.That(WorkerProtocol.ReadReply(2, 7, "connected", "7 {\"connected\":true}", Connected), Is.True);
        Assert.That(WorkerProtocol.ReadReply(2, 7, "connected", "7 {\"connected\":false}", Connected), Is.False);
        var counts = WorkerProtocol.ReadReply(2, 8, "count",
            "8 " + JsonSerializer.Serialize(Counts(SimulatedFleet.MacFor(1)), Web), r => r.Deserialize<FleetCounts>(Web));
        Assert.That(counts!.Macs, Is.EqualTo(new[] { SimulatedFleet.MacFor(1) }));

        foreach (var (text, says) in new[]
                 {
                     ("{\"connected\":true}", "without a sequence number"),
                     ("x {\"connected\":true}", "without a sequence number"),
                     ("-7 {\"connected\":true}", "without a sequence number"),
                     ("6 {\"connected\":true}", "replied to command 6, not to command 7"),
                     ("70 {\"connected\":true}", "replied to command 70, not to command 7"),
                     ("7 not json", "malformed reply to 'connected'"),
                     ("7 {\"connected\":tr", "malformed reply to 'connected'"),
                     ("7 ", "malformed reply to 'connected'"),
                     ("7 {\"error\":\"unknown command 'connected'\"}", "unknown command 'connected'"),
                     ("7 {\"error\":{\"code\":1}}", "{\"code\":1}"),
                     ("7 {}", "malformed reply to 'connected'"),
                     ("7 {\"connected\":\"yes\"}", "malformed reply to 'connected'"),
                     ("7 [true]", "malformed reply to 'connected'"),
                 })
        {
            var refused = Assert.Throws<FleetSimulationException>(() => WorkerProtocol.ReadReply(2, 7, "connected", text, Connected), text)!;
            Assert.That(refused.Message, Does.StartWith("worker 2").And.Contain(says), text);
        }
        var wrongType = Assert.Throws<FleetSimulationException>(() => WorkerProtocol.ReadReply(3, 1, "count", "1 {\"macs\":5}",
            r => r.Deserialize<FleetCounts>(Web)))!;
        Assert.That(wrongType.Message, Does.StartWith("worker 3 sent a malformed reply to 'count'"));
    }

    [Test]
    public async Task A_worker_s_input_ends_it_at_quit_or_at_the_end_of_input_and_passes_the_commands_before_in_order()
    {
        // the input arrives only once the test has registered on the end, so the order of the end and the commands'
        // completion is seen whatever the scheduling
        var input = new LineFeed();
        using (var quit = WorkerInput.Start(input))
        {
            bool? completedAtEnd = null;
            using var registration = quit.Ended.Register(() => completedAtEnd = quit.Commands.Completion.IsCompleted);
            input.Send("1 connected", "2 fail-health a,b");
            var lines = new List<string> { await quit.Commands.ReadAsync(), await quit.Commands.ReadAsync() };
            // every command read: the quit now ends the worker with nothing left in the channel
            input.Send("3 quit", "4 count");
            await foreach (var line in quit.Commands.ReadAllAsync()) { lines.Add(line); }
            Assert.That(lines, Is.EqualTo(new[] { "1 connected", "2 fail-health a,b" }), "nothing after quit");
            Assert.That(quit.Ended.IsCancellationRequested, Is.True, "whoever has read the last command sees the worker ended");
            Assert.That(completedAtEnd, Is.False, "the end is signalled before the commands complete");
        }
        using (var gone = WorkerInput.Start(new StringReader("1 reset\n")))
        {
            Assert.That(await gone.Commands.ReadAllAsync().ToListAsync(), Is.EqualTo(new[] { "1 reset" }));
            await Task.Delay(Timeout.Infinite, gone.Ended).ContinueWith(_ => { }, TaskScheduler.Default);
            Assert.That(gone.Ended.IsCancellationRequested, Is.True, "the coordinator's end (end of input) ends the worker");
        }
        Assert.That(WorkerProtocol.Parse("7 fail-health a,b"), Is.EqualTo(((long?)7, "fail-health", "a,b")));
        Assert.That(WorkerProtocol.Parse("quit"), Is.EqualTo(((long?)null, "quit", "")));
        Assert.That(WorkerProtocol.Parse("12 count"), Is.EqualTo(((long?)12, "count", "")));
        Assert.That(WorkerProtocol.Parse("12").Command, Is.Empty);
    }

    [Test]
    public void Workers_are_refused_with_an_external_server_or_another_scenario_before_anything_starts()
    {
        var data = Path.Combine(_directory, "sim");
        var scenario = Assert.Throws<FleetSimulationException>(() => _ = new FleetSimulation(
            new FleetSimSettings { Units = 4, Workers = 2, Scenarios = [FleetScenarios.DailyCheck], DataDirectory = data }, _ => { }))!;
        Assert.That(scenario.Message, Does.Contain("--workers: only"));
        var tooMany = Assert.Throws<FleetSimulationException>(() => _ = new FleetSimulation(
            new FleetSimSettings { Units = 2, Workers = 3, Scenarios = [FleetScenarios.Rollout], DataDirectory = data }, _ => { }))!;
        Assert.That(tooMany.Message, Does.Contain("--workers 3"));
        var negative = Assert.Throws<FleetSimulationException>(() => _ = new FleetSimulation(
            new FleetSimSettings { Units = 2, Workers = -1, Scenarios = [FleetScenarios.Rollout], DataDirectory = data }, _ => { }))!;
        Assert.That(negative.Message, Does.Contain("--workers -1"));
        var external = Assert.Throws<FleetSimulationException>(() => _ = new FleetSimulation(new FleetSimSettings
        {
            Units = 4, Workers = 2, Scenarios = [FleetScenarios.FirstBoot], DataDirectory = data, Server = new Uri("https://127.0.0.1:1/"),
            ServerCertificate = "c.pem", UnitKeyFile = "u.key", OperatorPassword = "p",
        }, _ => { }))!;
        Assert.That(external.Message, Does.Contain("drop --server"));
        Assert.That(Directory.Exists(data), Is.False, "nothing was written");
    }

    [TestCase(5, 4)]
    [TestCase(24, 2)]
    [TestCase(7, 7)]
    [TestCase(10, 3)]
    [TestCase(1, 1)]
    public void Every_worker_asked_for_holds_a_range_and_the_ranges_cover_the_units_once_in_order(int units, int workers)
    {
        var ranges = WorkerUnits.Ranges(units, workers);
        Assert.That(ranges.Select(r => r.Worker), Is.EqualTo(Enumerable.Range(0, workers)), "one range per worker asked for");
        Assert.That(ranges.Select(r => r.Count), Is.All.GreaterThan(0));
        Assert.That(ranges.Max(r => r.Count) - ranges.Min(r => r.Count), Is.LessThanOrEqualTo(1));
        Assert.That(ranges.SelectMany(r => Enumerable.Range(r.Offset, r.Count)), Is.EqualTo(Enumerable.Range(0, units)), "each unit once, in order");
    }

    [Test]
    public void A_rollout_pause_with_no_failing_unit_is_refused_before_anything_starts()
    {
        var data = Path.Combine(_directory, "sim");
        var refused = Assert.Throws<FleetSimulationException>(() => _ = new FleetSimulation(
            new FleetSimSettings { Units = 2, Scenarios = [FleetScenarios.RolloutPause], DataDirectory = data, FailHealthPercent = 0 }, _ => { }))!;
        Assert.That(refused.Message, Does.Contain("--fail-health 0"));
        Assert.That(Directory.Exists(data), Is.False, "nothing was written");
        // the same setting is fine for a rollout in which every unit is healthy
        Assert.DoesNotThrow(() => _ = new FleetSimulation(
            new FleetSimSettings { Units = 2, Scenarios = [FleetScenarios.Rollout], DataDirectory = data, FailHealthPercent = 0 }, _ => { }));
    }

    [Test]
    public void The_units_keep_the_firmware_health_window_unless_a_rollout_runs_or_one_is_given()
    {
        var firmware = new Tsunagu.Firmware.Updates.UpdateOptions();
        foreach (var scenarios in new[] { FleetScenarios.All, [FleetScenarios.PowerCut], [FleetScenarios.FirstBoot] })
        {
            var options = FleetSimulation.UnitUpdateOptions(new FleetSimSettings { Scenarios = scenarios });
            Assert.That(options.HealthWindow, Is.EqualTo(firmware.HealthWindow), string.Join(",", scenarios));
            Assert.That(options.HealthProbeInterval, Is.EqualTo(firmware.HealthProbeInterval), string.Join(",", scenarios));
        }
        Assert.That(firmware.HealthWindow, Is.EqualTo(TimeSpan.FromMinutes(2)));

        var rollout = FleetSimulation.UnitUpdateOptions(new FleetSimSettings { Scenarios = [FleetScenarios.FirstBoot, FleetScenarios.Rollout] });
        Assert.That(rollout.HealthWindow, Is.EqualTo(FleetSimSettings.RolloutHealthWindow));
        Assert.That(rollout.HealthProbeInterval, Is.EqualTo(TimeSpan.FromSeconds(1)));

        var given = FleetSimulation.UnitUpdateOptions(new FleetSimSettings { Scenarios = [FleetScenarios.PowerCut], HealthWindow = TimeSpan.FromSeconds(30) });
        Assert.That(given.HealthWindow, Is.EqualTo(TimeSpan.FromSeconds(30)));
        Assert.That(given.HealthProbeInterval, Is.EqualTo(TimeSpan.FromSeconds(5)), "a fifth of the window, at most 5 s");
    }

    [Test]
    public void The_rollout_scenarios_are_refused_without_push_or_against_an_external_server_before_anything_starts()
    {
        var data = Path.Combine(_directory, "sim");
        var noPush = Assert.Throws<FleetSimulationException>(() => _ = new FleetSimulation(
            new FleetSimSettings { Units = 2, Scenarios = [FleetScenarios.Rollout], DataDirectory = data, Push = false }, _ => { }))!;
        Assert.That(noPush.Message, Does.Contain("need push"));
        var external = Assert.Throws<FleetSimulationException>(() => _ = new FleetSimulation(new FleetSimSettings
        {
            Units = 2, Scenarios = [FleetScenarios.RolloutPause], DataDirectory = data, Server = new Uri("https://127.0.0.1:1/"),
            ServerCertificate = "c.pem", UnitKeyFile = "u.key", OperatorPassword = "p",
        }, _ => { }))!;
        Assert.That(external.Message, Does.Contain("in-process server"));
        var waves = Assert.Throws<FleetSimulationException>(() => _ = new FleetSimulation(
            new FleetSimSettings { Units = 2, Scenarios = [FleetScenarios.Rollout], DataDirectory = data, Waves = "10%,x" }, _ => { }))!;
        Assert.That(waves.Message, Does.Contain("waves"));
        Assert.That(Directory.Exists(data), Is.False, "nothing was written");
    }
}

/// <summary>Standard input the test feeds: each line sent is read in order; the end of input when the test ends it.</summary>
internal sealed class LineFeed : TextReader
{
    private readonly System.Threading.Channels.Channel<string> _lines = System.Threading.Channels.Channel.CreateUnbounded<string>();

    public void Send(params string[] lines)
    {
        foreach (var line in lines) { _lines.Writer.TryWrite(line); }
    }

    public void End() => _lines.Writer.TryComplete();

    public override async ValueTask<string?> ReadLineAsync(CancellationToken cancellationToken) =>
        await _lines.Reader.WaitToReadAsync(cancellationToken) && _lines.Reader.TryRead(out var line) ? line : null;

    public override Task<string?> ReadLineAsync() => ReadLineAsync(CancellationToken.None).AsTask();
}
