using System.Net;
using System.Net.Http.Json;
using System.Text.Json;
using Tsunagu.Cli.Factory;
using Tsunagu.Cli.Fleet;
using Tsunagu.Demo;
using Tsunagu.Firmware.Supervision;
using Tsunagu.Hal;
using Tsunagu.Protocol;
using Tsunagu.Server.Apis;
using Tsunagu.Server.Data;
using Tsunagu.Server.Fleet;
using Tsunagu.Server.Fleet.Rollouts;

namespace Tsunagu.IntegrationTests;

/// <summary>
/// A staged rollout with the real server, broker and supervisors of a simulated fleet: units of the first wave fail
/// their health check after installing (the host refuses their health probe), the error threshold pauses the rollout,
/// and no unit of a wave that was not open ever installs or even reports an install, although every unit is then
/// made to check (the operator's forced check) while the rollout is paused. Every case runs on SQLite and on PostgreSQL.
/// </summary>
[TestFixture("sqlite")]
[TestFixture("postgres")]
[NonParallelizable]
public class RolloutFleetTests(string kind)
{
    private static readonly JsonSerializerOptions Json = JsonSerializerOptions.Web;

    [SetUp]
    public void SetUp() => TestServer.DatabaseKind.Value = kind;

    [TearDown]
    public void TearDown() => TestServer.Configure.Value = null;

    /// <summary>The test server on this fixture's database (checked: the kind is set for the test in <see cref="SetUp"/>).</summary>
    private async Task<TestServer> StartAsync(SupervisorOptions? options = null)
    {
        TestServer.DatabaseKind.Value = kind;
        var server = await TestServer.StartAsync(options);
        Assert.That(server.Store.Database.Kind, Is.EqualTo(kind == "postgres" ? DatabaseKind.Postgres : DatabaseKind.Sqlite), "the server runs on the fixture's database");
        return server;
    }

    /// <summary>
    /// A server on this fixture's database with fast updates and a rollout pass every 0.2 s, and <paramref name="count"/>
    /// units registered (each behind a <see cref="FailingHealth"/> kept in <paramref name="networks"/> when given), Ready
    /// and listening for pushes. The caller disposes the server.
    /// </summary>
    private async Task<(TestServer Server, List<FleetUnit> Units)> StartFleetAsync(int count, Dictionary<string, FailingHealth>? networks = null)
    {
        TestServer.Configure.Value = o => o.RolloutTickSeconds = 0.2;
        var server = await StartAsync(TestServer.FastUpdateOptions);
        try
        {
            var units = new List<FleetUnit>();
            if (networks is null)
            {
                units.AddRange(await server.AddUnitsAsync(count));
            }
            else
            {
                using var client = server.Operator();
                for (var i = 1; i <= count; i++)
                {
                    var identity = server.Identity(i);
                    await client.RegisterAsync(TestServer.Registration(identity), CancellationToken.None);
                    units.Add(await server.Fleet.AddUnitAsync(identity, CancellationToken.None, u => networks[u.Mac] = new FailingHealth(u.Hardware.Hardware.Network)));
                }
            }
            server.Fleet.StartAll();
            foreach (var u in units) { await server.WaitReadyAsync(u); }
            await server.WaitForAsync(() => units.All(u => u.Supervisor.Context.Push?.IsConnected == true), "every unit listening for pushes");
            return (server, units);
        }
        catch
        {
            await server.DisposeAsync();
            throw;
        }
    }

    /// <summary>A network in front of a unit that, while <see cref="Failing"/>, answers its health probe (GET /healthz) with 403: a software fault.</summary>
    private sealed class FailingHealth(INetworkAccess inner) : INetworkAccess
    {
        public volatile bool Failing;

        public HttpMessageHandler WrapHandler(HttpMessageHandler handler) => new Refuse(this, inner.WrapHandler(handler));

        public void EnsureRoute() => inner.EnsureRoute();

        private sealed class Refuse(FailingHealth owner, HttpMessageHandler next) : DelegatingHandler(next)
        {
            protected override Task<HttpResponseMessage> SendAsync(HttpRequestMessage request, CancellationToken ct) =>
                owner.Failing && request.Method == HttpMethod.Get && request.RequestUri?.AbsolutePath == Routes.Health
                    ? Task.FromResult(new HttpResponseMessage(HttpStatusCode.Forbidden) { RequestMessage = request })
                    : base.SendAsync(request, ct);
        }
    }

    private static async Task<T> Call<T>(OperatorClient client, HttpMethod method, string path, object? body = null) =>
        JsonSerializer.Deserialize<T>(body is null ? await client.SendAsync(method, path, null, CancellationToken.None)
            : await client.SendJsonAsync(method, path, body, CancellationToken.None), Json)!;

    [Test]
    public async Task Failures_in_the_first_wave_pause_the_rollout_and_no_unit_beyond_the_open_waves_installs()
    {
        const int count = 12;
        var networks = new Dictionary<string, FailingHealth>();
        var (started, units) = await StartFleetAsync(count, networks);
        await using var server = started;
        using var client = server.Operator();

        // the group: every unit tagged "lab"; a third of them (two of the first wave among them) will fail health
        foreach (var u in units) { await Call<UnitTagsView>(client, HttpMethod.Put, $"/api/v1/units/{u.Mac}/tags", new UnitTagsRequest(["lab", "kanto"])); }
        var group = await Call<GroupView>(client, HttpMethod.Post, FleetApi.GroupsRoute, new NewGroup("lab", null, new GroupFilter(Tags: ["lab"])));
        Assert.That(group.MemberCount, Is.EqualTo(count));
        var waves = new List<WaveSpec> { new(Count: 4), new(Percent: 25), new(Percent: 100) };
        var plan = RolloutEngine.Plan("lab-p3", waves, units.Select(u => u.Mac).ToList()).ToDictionary(m => m.Mac, m => m.Wave);
        var failing = plan.Where(p => p.Value == 0).Select(p => p.Key).Order().Take(2)
            .Concat(plan.Where(p => p.Value > 0).Select(p => p.Key).Order().Where((_, i) => i % 4 == 0)).ToHashSet();
        foreach (var mac in failing) { networks[mac].Failing = true; }

        await RolloutCatalogue.AddPattern3Async(server, client);
        var created = await Call<RolloutView>(client, HttpMethod.Post, RolloutsApi.Route,
            new NewRollout("lab-p3", "lab", DemoCatalogue.Pattern2, "pattern-3", waves, SuccessPercent: 50, ErrorPercent: 20));
        Assert.That(created.Waves.Select(w => w.Members), Is.EqualTo(new[] { 4, 3, 5 }));
        Assert.That(created.State, Is.EqualTo(RolloutStates.Running));
        var stored = (await server.Store.Rollouts.RolloutMembersAsync((await server.Store.Rollouts.GetRolloutAsync("lab-p3"))!)).ToDictionary(m => m.Mac, m => m.Wave);
        Assert.That(stored, Is.EqualTo(plan), "the waves are the plan's");

        // the first wave installs; two of its units fail health and roll back; the error threshold pauses the rollout
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(90);
        while ((await server.Store.Rollouts.GetRolloutAsync("lab-p3"))!.State != RolloutStates.Paused && DateTime.UtcNow < deadline) { await Task.Delay(100); }
        Assert.That((await server.Store.Rollouts.GetRolloutAsync("lab-p3"))!.State, Is.EqualTo(RolloutStates.Paused),
            "the rollout paused by the error threshold; it is: " + JsonSerializer.Serialize(await Call<RolloutView>(client, HttpMethod.Get, $"{RolloutsApi.Route}/lab-p3"), Json) +
            "; reports: " + string.Join("; ", (await server.Store.History.ListUpdateReportsAsync()).Select(r => $"{r.Mac} {r.UpdateId} {r.Success} {r.At}")) +
            "; members: " + string.Join("; ", (await server.Store.Rollouts.RolloutMembersAsync((await server.Store.Rollouts.GetRolloutAsync("lab-p3"))!)).Select(m => $"{m.Mac} w{m.Wave} {m.Status} {m.FailedAt}")) +
            "; audit: " + string.Join("; ", (await server.Store.ListAuditAsync(100)).Where(a => a.Target == "lab-p3").Select(a => $"{a.At} {a.Action} {a.Detail}")));
        var paused = (await server.Store.Rollouts.GetRolloutAsync("lab-p3"))!;
        Assert.That(paused.Reason, Does.Contain("error threshold"));
        var openAtPause = (int)paused.OpenWaves;

        // the time from the threshold crossed (the report that crossed it) to the pause (its audit entry)
        var reports = (await server.Store.History.ListUpdateReportsAsync()).Where(r => r.UpdateId == "p2-to-p3").ToList();
        var pauseAudit = (await server.Store.ListAuditAsync(500)).Single(a => a.Target == "lab-p3" && a.Action == "rollout.pause");
        var failedReports = reports.Where(r => r.Success == 0).OrderBy(r => r.At, StringComparer.Ordinal).ToList();
        Assert.That(failedReports, Is.Not.Empty);
        var crossing = DateTimeOffset.Parse(failedReports.Last(r => string.CompareOrdinal(r.At, pauseAudit.At) <= 0).At, System.Globalization.CultureInfo.InvariantCulture);
        var pausedAt = DateTimeOffset.Parse(pauseAudit.At, System.Globalization.CultureInfo.InvariantCulture);
        TestContext.Out.WriteLine($"measured: error threshold crossed -> rollout paused in {(pausedAt - crossing).TotalMilliseconds:0} ms (engine pass every 200 ms)");

        // every unit is made to check now, while the rollout is paused: the operator's forced check forces importance, not the rollout
        var forced = await Call<ForceCheckResponse>(client, HttpMethod.Post, "/api/v1/units/check", new ForceCheckRequest(units.Select(u => u.Mac).ToList(), null));
        await server.WaitForAsync(() => units.AllAsync(async u => (await server.Store.History.ListUnitEventsAsync(u.Mac, 20)).Any(e =>
            e.Detail?.Contains("forced", StringComparison.Ordinal) == true && e.Detail.Contains("rollout lab-p3", StringComparison.Ordinal))
            || (await server.Store.Units.GetUnitAsync(u.Mac))!.Pattern == "pattern-3"), "every unit's forced check answered", TimeSpan.FromSeconds(60));
        _ = forced;

        // the invariant, over the whole history: no unit of a wave that was not open ever reported an install, and none runs pattern-3
        reports = (await server.Store.History.ListUpdateReportsAsync()).Where(r => r.UpdateId == "p2-to-p3").ToList();
        Assert.That(reports.Select(r => plan[r.Mac]), Is.All.LessThan(openAtPause), "an install was reported by a unit of a wave that was not open");
        Assert.That((await units.WhereAsync(async u => plan[u.Mac] >= openAtPause && (await server.Store.Units.GetUnitAsync(u.Mac))!.Pattern != DemoCatalogue.Pattern2)).Select(u => u.Mac), Is.Empty);
        Assert.That((await server.Store.Rollouts.GetRolloutAsync("lab-p3"))!.OpenWaves, Is.EqualTo(openAtPause), "no wave opened after the pause");
        // units that failed health rolled back on their own and stay on pattern 2; they are not offered the update again
        // (units of the open waves may still be reporting: the view is bounded by the reports read before and after it)
        var reportsBefore = (await server.Store.History.ListUpdateReportsAsync()).Where(r => r.UpdateId == "p2-to-p3").ToList();
        var view = await Call<RolloutView>(client, HttpMethod.Get, $"{RolloutsApi.Route}/lab-p3");
        var reportsAfter = (await server.Store.History.ListUpdateReportsAsync()).Where(r => r.UpdateId == "p2-to-p3").ToList();
        int Failed(List<UpdateReportRow> rows) => rows.Where(r => r.Success == 0).Select(r => r.Mac).Distinct().Count();
        int Installed(List<UpdateReportRow> rows) => rows.Where(r => r.Success != 0).Select(r => r.Mac).Distinct().Count();
        foreach (var mac in reportsAfter.Where(r => r.Success == 0).Select(r => r.Mac).Distinct())
        {
            Assert.That(failing, Does.Contain(mac), "only units made to fail health failed");
            Assert.That((await server.Store.Units.GetUnitAsync(mac))!.Pattern, Is.EqualTo(DemoCatalogue.Pattern2));
        }
        Assert.That(view.Total.Failed, Is.InRange(Failed(reportsBefore), Failed(reportsAfter)));
        Assert.That(view.Total.Installed, Is.InRange(Installed(reportsBefore), Installed(reportsAfter)));
        Assert.That((await server.Store.ListAuditAsync(500)).Count(a => a.Target == "lab-p3" && a.Action == "rollout.pause"), Is.EqualTo(1), "the pause decided once");

        // abort: the transition stays held; nothing more installs
        await Call<RolloutView>(client, HttpMethod.Post, $"{RolloutsApi.Route}/lab-p3/abort");
        Assert.That(Assert.ThrowsAsync<OperatorApiException>(() => client.SendAsync(HttpMethod.Post, $"{RolloutsApi.Route}/lab-p3/resume", null, CancellationToken.None))!.Status,
            Is.EqualTo(409));
    }

    [Test]
    public async Task An_abort_that_reverts_takes_the_moved_units_back_by_the_update_program_and_leaves_the_rest()
    {
        var (started, units) = await StartFleetAsync(4);
        await using var server = started;
        using var client = server.Operator();
        await RolloutCatalogue.AddPattern3Async(server, client);
        await RolloutCatalogue.AddWayBackAsync(server, client);
        await Call<GroupView>(client, HttpMethod.Post, FleetApi.GroupsRoute, new NewGroup("lab", null, new GroupFilter(Pattern: DemoCatalogue.Pattern2)));
        // wave 1 (two units) installs; wave 2 waits an hour, so the other two are never moved
        await Call<RolloutView>(client, HttpMethod.Post, RolloutsApi.Route,
            new NewRollout("lab-p3", "lab", DemoCatalogue.Pattern2, "pattern-3", [new(Count: 2), new(Percent: 100)], SuccessPercent: 100, MinWaveSeconds: 3600));
        var plan = (await server.Store.Rollouts.RolloutMembersAsync((await server.Store.Rollouts.GetRolloutAsync("lab-p3"))!)).ToDictionary(m => m.Mac, m => m.Wave);
        var moved = plan.Where(p => p.Value == 0).Select(p => p.Key).Order().ToList();
        // on pattern 3 and past its health window: the unit's successful install report is recorded (a unit seen on
        // pattern 3 before its health check ended may still roll back, and a failed unit is not returned)
        await server.WaitForAsync(() => moved.AllAsync(async m => (await server.Store.Units.GetUnitAsync(m))!.Pattern == "pattern-3"
            && (await server.Store.History.ListUpdateReportsAsync(m)).Any(r => r.UpdateId == "p2-to-p3" && r.Success != 0)), "wave 1 on pattern 3, its installs reported", TimeSpan.FromSeconds(90));
        // the program back is a way back (to a pattern defined before): a unit without a target is never offered it, or the
        // units would go round between the two patterns; a check of the moved units leaves them on pattern 3
        var checks = moved.ToDictionary(m => m, m => server.ChainOf(m).Count(s => s == StateId.VersionCheck));
        var forced = await client.ForceCheckAsync(new ForceCheckRequest(moved, null), CancellationToken.None);
        Assert.That(forced.Notified, Is.EquivalentTo(moved));
        // the push is acknowledged (the unit has it), then the unit's version check it started is over and it is Ready
        await server.WaitForAsync(async () => (await server.Store.PushChecks.GetPushCheckAsync(forced.CheckId!)) is { Count: > 0 } rows
            && rows.Select(r => r.Mac).Order().SequenceEqual(moved) && rows.All(r => r.DeliveredAt is not null), "the forced check delivered to the moved units", TimeSpan.FromSeconds(90));
        foreach (var m in moved)
        {
            await server.WaitForAsync(async () => server.ChainOf(m).Count(s => s == StateId.VersionCheck) > checks[m] && server.ChainOf(m)[^1] == StateId.Ready
                && (await server.Store.Units.GetUnitAsync(m))!.State == "Ready", $"{m} checked again", TimeSpan.FromSeconds(90));
        }
        Assert.That(await moved.SelectAsync(async m => (await server.Store.Units.GetUnitAsync(m))!.Pattern), Is.All.EqualTo("pattern-3"), "a check without a target does not take the way back");
        Assert.That((await server.Store.History.ListUpdateReportsAsync()).Where(r => r.UpdateId == "p3-to-p2"), Is.Empty);

        // a wrong choice is refused and changes nothing (the fleet keeps writing its own rows meanwhile: the rollout's are compared)
        var wrong = Assert.ThrowsAsync<OperatorApiException>(() => client.SendJsonAsync(HttpMethod.Post, $"{RolloutsApi.Route}/lab-p3/abort", new { units = "explode" }, CancellationToken.None))!;
        Assert.That(wrong.Status, Is.EqualTo(400));
        Assert.That((await server.Store.Rollouts.GetRolloutAsync("lab-p3"))!.State, Is.EqualTo(RolloutStates.Running));
        Assert.That(await server.Store.Rollouts.RolloutReturnsAsync("lab-p3", null, 1000), Is.Empty);
        Assert.That(await units.SelectAsync(async u => (await server.Store.Units.GetUnitAsync(u.Mac))!.TargetPattern), Is.All.Null);
        Assert.That((await server.Store.ListAuditAsync(100)).Count(a => a.Target == "lab-p3" && a.Action == "rollout.abort"), Is.Zero);

        var aborted = await Call<RolloutView>(client, HttpMethod.Post, $"{RolloutsApi.Route}/lab-p3/abort", new AbortRequest(AbortChoices.Revert));
        Assert.That(aborted.State, Is.EqualTo(RolloutStates.Aborted));
        // the abort wakes the moved units before its answer is built: a fast unit may already be back by then
        Assert.That(aborted.Returns!.Select(r => r.Mac), Is.EqualTo(moved), "the moved units, and only they, return");
        Assert.That(aborted.Returns!.Select(r => r.Outcome), Has.All.Matches<string>(o => o is "returning to pattern-2" or "returned to pattern-2"), "each is on its way back, or back already");
        await server.WaitForAsync(() => moved.AllAsync(async m => (await server.Store.Units.GetUnitAsync(m))!.Pattern == DemoCatalogue.Pattern2), "the moved units back on pattern 2", TimeSpan.FromSeconds(90));
        var reports = await server.Store.History.ListUpdateReportsAsync();
        Assert.That(reports.Where(r => r.UpdateId == "p3-to-p2" && r.Success != 0).Select(r => r.Mac).Order(), Is.EqualTo(moved), "each moved unit went back by the program back, once");
        Assert.That(reports.Where(r => r.UpdateId == "p2-to-p3").Select(r => r.Mac).Distinct().Order(), Is.EqualTo(moved), "no unit beyond wave 1 ever installed");
        Assert.That(await units.Where(u => !moved.Contains(u.Mac)).SelectAsync(async u => (await server.Store.Units.GetUnitAsync(u.Mac))!.TargetPattern), Is.All.Null, "units never moved are left alone");
        Assert.That((await server.Store.ListAuditAsync(100)).Single(a => a.Target == "lab-p3" && a.Action == "rollout.abort").Detail, Does.Contain("revert: 2 return"));
    }

    [Test]
    public async Task A_unit_back_on_the_old_pattern_after_reporting_its_install_is_a_failed_member_that_pauses_the_rollout_and_is_never_offered_the_update_again()
    {
        var (started, units) = await StartFleetAsync(4);
        await using var server = started;
        using var client = server.Operator();
        await RolloutCatalogue.AddPattern3Async(server, client);
        await Call<GroupView>(client, HttpMethod.Post, FleetApi.GroupsRoute, new NewGroup("lab", null, new GroupFilter(Pattern: DemoCatalogue.Pattern2)));
        // wave 1 (two units) installs; wave 2 waits an hour; one failure of the two crosses the error threshold
        await Call<RolloutView>(client, HttpMethod.Post, RolloutsApi.Route,
            new NewRollout("lab-p3", "lab", DemoCatalogue.Pattern2, "pattern-3", [new(Count: 2), new(Percent: 100)], SuccessPercent: 100, ErrorPercent: 50, MinWaveSeconds: 3600));
        var plan = (await server.Store.Rollouts.RolloutMembersAsync((await server.Store.Rollouts.GetRolloutAsync("lab-p3"))!)).ToDictionary(m => m.Mac, m => m.Wave);
        var moved = plan.Where(p => p.Value == 0).Select(p => p.Key).Order().ToList();
        await server.WaitForAsync(() => moved.AllAsync(async m => (await server.Store.Units.GetUnitAsync(m))!.Pattern == "pattern-3"
            && (await server.Store.History.ListUpdateReportsAsync(m)).Any(r => r.UpdateId == "p2-to-p3" && r.Success != 0)), "wave 1 on pattern 3, its installs reported", TimeSpan.FromSeconds(90));
        var members = (await server.Store.Rollouts.RolloutMembersAsync((await server.Store.Rollouts.GetRolloutAsync("lab-p3"))!)).ToDictionary(m => m.Mac, m => m.Status);
        Assert.That(moved.Select(m => members[m]), Is.All.EqualTo(MemberStatus.Installed));
        Assert.That((await server.Store.Rollouts.GetRolloutAsync("lab-p3"))!.State, Is.EqualTo(RolloutStates.Running));

        // the unit's version check is what sees it first (a ready report would too: the next test): the unit has sent its
        // ready report on pattern 3 and waits for its next check
        await server.WaitForAsync(async () => (await server.Store.Units.GetUnitAsync(moved[0]))!.State == UnitStates.Ready && server.ChainOf(moved[0])[^1] == StateId.Ready,
            $"{moved[0]} Ready on pattern 3", TimeSpan.FromSeconds(60));

        // the fault, after the report: the first moved unit is returned to pattern 2's software on its own (as a boot chain
        // falling back to the old slot does), its `current` link swung back to the old tree the install kept
        var back = units.Single(u => u.Mac == moved[0]);
        var vcp = Path.Combine(back.Supervisor.Context.Apps!.Root, "vcp");
        var old = DemoCatalogue.Pattern2Applications["vcp"];
        Assert.That(Directory.Exists(Path.Combine(vcp, old)), Is.True, "the install kept the old tree");
        File.CreateSymbolicLink(Path.Combine(vcp, "current.fallback"), old);
        // rename(2) over the link, as the unit's own switch does (File.Move follows the link to the old tree, a directory)
        using (var mv = System.Diagnostics.Process.Start("mv", ["-T", Path.Combine(vcp, "current.fallback"), Path.Combine(vcp, "current")]))
        {
            await mv.WaitForExitAsync();
            Assert.That(mv.ExitCode, Is.Zero, "mv -T");
        }
        Assert.That(back.Supervisor.Context.Apps!.Current()["vcp"], Is.EqualTo(old));

        // it checks (made to, now): the host sees it on pattern 2 again, records p2-to-p3 failed for it, and the error
        // threshold (1 of 2) pauses the rollout
        var checks = server.ChainOf(back.Mac).Count(s => s == StateId.VersionCheck);
        await client.ForceCheckAsync(new ForceCheckRequest([back.Mac], null), CancellationToken.None);
        await server.WaitForAsync(async () => (await server.Store.Rollouts.GetRolloutAsync("lab-p3"))!.State == RolloutStates.Paused, "the rollout paused", TimeSpan.FromSeconds(90));
        var paused = (await server.Store.Rollouts.GetRolloutAsync("lab-p3"))!;
        Assert.That(paused.Reason, Does.Contain("error threshold").And.Contain("1 of 2"));
        var failures = (await server.Store.History.ListUpdateReportsAsync(back.Mac)).Where(r => r.UpdateId == "p2-to-p3" && r.Success == 0).ToList();
        Assert.That(failures, Has.Count.EqualTo(1));
        Assert.That(failures[0].Error, Does.Contain("reported installed").And.Contain($"runs {DemoCatalogue.Pattern2} again"));
        Assert.That(failures[0].Pattern, Is.EqualTo(DemoCatalogue.Pattern2));
        Assert.That((await server.Store.Units.GetUnitAsync(back.Mac))!.Pattern, Is.EqualTo(DemoCatalogue.Pattern2));
        members = (await server.Store.Rollouts.RolloutMembersAsync(paused)).ToDictionary(m => m.Mac, m => m.Status);
        Assert.That(members[back.Mac], Is.EqualTo(MemberStatus.Failed));
        Assert.That(members[moved[1]], Is.EqualTo(MemberStatus.Installed), "the other unit of the wave is untouched");
        var view = await Call<RolloutView>(client, HttpMethod.Get, $"{RolloutsApi.Route}/lab-p3");
        Assert.That((view.Total.Installed, view.Total.Failed), Is.EqualTo((1, 1)));
        Assert.That((await server.Store.ListAuditAsync(200)).Count(a => a.Action == "update.failed" && a.Actor == back.Mac && a.Target == "p2-to-p3"), Is.EqualTo(1));
        Assert.That((await server.Store.History.ListUnitEventsAsync(back.Mac, 50)).Count(e => e.Failed != 0 && e.Detail?.Contains("again (its own rollback", StringComparison.Ordinal) == true), Is.EqualTo(1));

        // resumed, and made to check twice more: the unit is never offered the update again (it stays on pattern 2, reports
        // nothing), and the fall back is recorded once (its report is now the unit's newest)
        await Call<RolloutView>(client, HttpMethod.Post, $"{RolloutsApi.Route}/lab-p3/resume");
        for (var i = 0; i < 2; i++)
        {
            var before = server.ChainOf(back.Mac).Count(s => s == StateId.VersionCheck);
            var forced = await client.ForceCheckAsync(new ForceCheckRequest([back.Mac], null), CancellationToken.None);
            await server.WaitForAsync(() => server.ChainOf(back.Mac).Count(s => s == StateId.VersionCheck) > before && server.ChainOf(back.Mac)[^1] == StateId.Ready,
                $"{back.Mac} checked again ({i + 1})", TimeSpan.FromSeconds(90));
            Assert.That(forced.Notified, Is.EqualTo(new[] { back.Mac }));
        }
        Assert.That(server.ChainOf(back.Mac).Count(s => s == StateId.VersionCheck), Is.GreaterThan(checks + 2));
        Assert.That((await server.Store.History.ListUnitEventsAsync(back.Mac, 5)).First(e => e.Kind == UnitEventKinds.Check).Detail,
            Does.Contain("deferred").And.Contain("the unit failed p2-to-p3"));
        var reports = (await server.Store.History.ListUpdateReportsAsync(back.Mac)).Where(r => r.UpdateId == "p2-to-p3").ToList();
        Assert.That((reports.Count(r => r.Success != 0), reports.Count(r => r.Success == 0)), Is.EqualTo((1, 1)), "one install, one failure: never installed again");
        Assert.That((await server.Store.Units.GetUnitAsync(back.Mac))!.Pattern, Is.EqualTo(DemoCatalogue.Pattern2));
        Assert.That(back.Supervisor.Context.Apps!.Current()["vcp"], Is.EqualTo(old));
        // no unit beyond wave 1 installed; the other moved unit recorded nothing failed
        Assert.That((await server.Store.History.ListUpdateReportsAsync()).Where(r => r.UpdateId == "p2-to-p3").Select(r => r.Mac).Distinct().Order(), Is.EqualTo(moved));
        Assert.That((await server.Store.History.ListUpdateReportsAsync(moved[1])).Where(r => r.Success == 0), Is.Empty);
    }

    [Test]
    public async Task A_ready_report_on_the_old_pattern_after_an_install_report_records_the_update_failed_once_and_nothing_else_does()
    {
        await using var server = await StartAsync();
        using var client = server.Operator();
        await RolloutCatalogue.AddPattern3Async(server, client);
        var mac = (await server.AddUnitsAsync(1))[0].Mac;
        using var http = await VpnKeyTests.UnitHttp(server, mac);
        // the host's record of the unit: p1-to-p2 reported installed, pattern 2, bundle counter 5 of p1-to-p2
        void Recorded(long success, bool clear = true) => Assert.That(server.ExecuteSql($"""
            {(clear ? $"DELETE FROM update_reports WHERE mac = '{mac}';" : "")}
            INSERT INTO update_reports (mac, update_id, success, error, pattern, at) VALUES ('{mac}', 'p1-to-p2', {success}, NULL, 'pattern-2', '2026-01-01T00:00:00.0000000Z');
            UPDATE units SET pattern = 'pattern-2', state = 'Ready', last_bundle_version = 5, last_bundle_id = 'p1-to-p2' WHERE mac = '{mac}';
            """), Is.GreaterThan(0));
        async Task<List<UpdateReportRow>> Failures() => (await server.Store.History.ListUpdateReportsAsync(mac)).Where(r => r.Success == 0).ToList();
        async Task Ready(Inventory inventory)
        {
            using var answer = await http.PostAsJsonAsync(Routes.Ready, new ReadyReport(inventory, null, "203.0.113.7"), ProtocolJson.Default.ReadyReport);
            Assert.That(answer.StatusCode, Is.EqualTo(HttpStatusCode.OK), await answer.Content.ReadAsStringAsync());
        }
        var counter = new Tsunagu.Protocol.Bundles.BundleCounter(5, "p1-to-p2");
        var fellBack = VpnKeyTests.Factory() with { LastBundle = counter }; // pattern 1 (p1-to-p2's from pattern), the counter kept

        // a factory reset: pattern 1 without a counter (the data partition was formatted)
        Recorded(1);
        await Ready(VpnKeyTests.Factory());
        Assert.That(await Failures(), Is.Empty, "a unit reset to its factory software");
        // an install after p1-to-p2 whose report never came (a way back, its report refused): the counter names the other program
        Recorded(1);
        server.ExecuteSql($"UPDATE units SET last_bundle_version = 6, last_bundle_id = 'p2-to-p3' WHERE mac = '{mac}'");
        await Ready(VpnKeyTests.Factory() with { LastBundle = new Tsunagu.Protocol.Bundles.BundleCounter(6, "p2-to-p3") });
        Assert.That(await Failures(), Is.Empty, "the counter of a later install");
        // the newest report a failure: its own rollback was reported already
        Recorded(0);
        await Ready(fellBack);
        Assert.That((await Failures()).Count, Is.EqualTo(1), "only the failure reported");
        // on the pattern the report said, or on a third pattern: nothing
        Recorded(1);
        await Ready(new Inventory(DemoCatalogue.HardwareVersion, DemoCatalogue.OsVersion, DemoCatalogue.Pattern2Applications.ToDictionary(a => a.Key, a => a.Value), counter));
        Assert.That(await Failures(), Is.Empty, "on the installed pattern");
        Recorded(1);
        await Ready(RolloutCatalogue.Pattern3Inventory() with { LastBundle = counter });
        Assert.That(await Failures(), Is.Empty, "on a pattern the program does not lead from");
        Assert.That((await server.Store.Units.GetUnitAsync(mac))!.Pattern, Is.EqualTo("pattern-3"));

        // back on pattern 1 after the install was reported: one failure of p1-to-p2, its audit and history entries; the same
        // report again, with the row set back to pattern 2 (a request that read the row before the first wrote), adds nothing
        Recorded(1);
        await Ready(fellBack);
        server.ExecuteSql($"UPDATE units SET pattern = 'pattern-2' WHERE mac = '{mac}'");
        await Ready(fellBack);
        var failures = await Failures();
        Assert.That(failures, Has.Count.EqualTo(1));
        Assert.That((failures[0].UpdateId, failures[0].Pattern), Is.EqualTo(("p1-to-p2", DemoCatalogue.Pattern1)));
        Assert.That(failures[0].Error, Is.EqualTo($"update p1-to-p2: reported installed at 2026-01-01T00:00:00.0000000Z, the unit runs {DemoCatalogue.Pattern1} again (its own rollback after the report)"));
        Assert.That(failures[0].InstallId, Does.Match("^[0-9a-f]{32}$"));
        Assert.That((await server.Store.Units.GetUnitAsync(mac))!.Pattern, Is.EqualTo(DemoCatalogue.Pattern1));
        Assert.That((await server.Store.ListAuditAsync(100)).Count(a => a.Action == "update.failed" && a.Actor == mac), Is.EqualTo(1));
        Assert.That((await server.Store.History.ListUnitEventsAsync(mac, 50)).Count(e => e.Failed != 0 && e.Kind == UnitEventKinds.Update), Is.EqualTo(1));

        // two requests that read the same row at once: one records the failure, the other nothing
        Recorded(1);
        var row = (await server.Store.Units.GetUnitForCheckAsync(mac))!;
        var both = await Task.WhenAll(Enumerable.Range(0, 2).Select(_ => Task.Run(() => server.Store.History.RecordFallBackAsync(row, DemoCatalogue.Pattern1, counter))));
        Assert.That(both.Count(r => r is not null), Is.EqualTo(1), "recorded by one of the two");
        Assert.That(await Failures(), Has.Count.EqualTo(1));
        Assert.That((await server.Store.ListAuditAsync(100)).Count(a => a.Action == "update.failed" && a.Actor == mac), Is.EqualTo(2), "one more audit entry, not two");
    }

    [Test]
    public async Task An_error_threshold_with_revert_aborts_and_takes_each_moved_unit_back_once_while_failed_units_stay_back()
    {
        const int count = 8;
        var networks = new Dictionary<string, FailingHealth>();
        var (started, units) = await StartFleetAsync(count, networks);
        await using var server = started;
        using var client = server.Operator();
        await RolloutCatalogue.AddPattern3Async(server, client);
        await RolloutCatalogue.AddWayBackAsync(server, client);
        await Call<GroupView>(client, HttpMethod.Post, FleetApi.GroupsRoute, new NewGroup("lab", null, new GroupFilter(Pattern: DemoCatalogue.Pattern2)));

        // wave 1 (four units), one of which fails its health check: 1 of 4 reaches the error threshold of 25%; wave 2 would
        // need every unit of wave 1 installed, so it never opens
        var waves = new List<WaveSpec> { new(Count: 4), new(Percent: 100) };
        var plan = RolloutEngine.Plan("lab-p3", waves, units.Select(u => u.Mac).ToList()).ToDictionary(m => m.Mac, m => m.Wave);
        var failing = plan.Where(p => p.Value == 0).Select(p => p.Key).Order().First();
        networks[failing].Failing = true;
        await Call<RolloutView>(client, HttpMethod.Post, RolloutsApi.Route,
            new NewRollout("lab-p3", "lab", DemoCatalogue.Pattern2, "pattern-3", waves, SuccessPercent: 100, ErrorPercent: 25, OnError: ErrorActions.Revert, MinWaveSeconds: 3600));

        await server.WaitForAsync(async () => (await server.Store.Rollouts.GetRolloutAsync("lab-p3"))!.State == RolloutStates.Aborted, "the error threshold aborted the rollout", TimeSpan.FromSeconds(90));
        var aborted = (await server.Store.Rollouts.GetRolloutAsync("lab-p3"))!;
        Assert.That(aborted.Reason, Does.Contain("error threshold: 1 of 4").And.Contain("revert:"));
        // every unit the rollout moved comes back by the program back, and its return ends
        await server.WaitForAsync(async () => await server.Store.Rollouts.RolloutReturnsAsync("lab-p3", null, 1000) is { Count: > 0 } r && r.All(x => x.Returned.StartsWith("returned to", StringComparison.Ordinal))
            && await units.AllAsync(async u => await server.Store.Units.GetUnitAsync(u.Mac) is { Pattern: var p, State: "Ready" } && p == DemoCatalogue.Pattern2),
            "the moved units back on pattern 2, their returns ended", TimeSpan.FromSeconds(120));

        var reports = await server.Store.History.ListUpdateReportsAsync();
        var moved = reports.Where(r => r.UpdateId == "p2-to-p3" && r.Success != 0).Select(r => r.Mac).Distinct().Order().ToList();
        Assert.That(moved, Is.Not.Empty);
        Assert.That(moved.Select(m => plan[m]), Is.All.EqualTo(0), "only wave 1 ever installed");
        Assert.That(reports.Where(r => r.UpdateId == "p2-to-p3").Select(r => plan[r.Mac]), Is.All.EqualTo(0), "no unit beyond wave 1 even tried");
        Assert.That((await server.Store.Rollouts.RolloutReturnsAsync("lab-p3", null, 1000)).Select(r => (r.Mac, r.Returned)), Is.EqualTo(moved.Select(m => (m, "returned to pattern-2"))),
            "exactly the moved units were returned, and their returns ended");
        Assert.That(reports.Where(r => r.UpdateId == "p3-to-p2").Select(r => (r.Mac, r.Success != 0)).Order(), Is.EqualTo(moved.Select(m => (m, true))),
            "each moved unit went back once, and nothing else took the way back");
        Assert.That(reports.Where(r => r.Mac == failing && r.UpdateId is "p2-to-p3" or "p3-to-p2").Select(r => (r.UpdateId, r.Success != 0)), Is.EqualTo(new[] { ("p2-to-p3", false) }),
            "the failed unit rolled back on its own, once, and was never offered the way back");
        Assert.That(await units.SelectAsync(async u => (await server.Store.Units.GetUnitAsync(u.Mac))!.TargetPattern), Is.All.Null, "the returns ended: no unit stays pinned");
        var audit = (await server.Store.ListAuditAsync(500)).Where(a => a.Target == "lab-p3").ToList();
        var abort = audit.Single(a => a.Action == "rollout.abort");
        Assert.That(abort.Actor, Is.EqualTo("rollout:lab-p3"), "the engine's decision");
        Assert.That(abort.Detail, Does.Contain($"revert: {moved.Count} return"));
        Assert.That(moved, Is.All.Matches<string>(m => abort.Detail!.Contains(m, StringComparison.Ordinal)), "each returning unit is named in the audit entry");
        Assert.That(audit.Where(a => a.Action == "rollout.returned").SelectMany(a => moved.Where(m => a.Detail!.Contains(m, StringComparison.Ordinal))).Order(),
            Is.EqualTo(moved), "each return's end is audited once");

        // every unit checks again: nothing moves and nothing is reported again
        var before = (await server.Store.History.ListUpdateReportsAsync()).Count;
        var readies = units.ToDictionary(u => u.Mac, u => server.ChainOf(u.Mac).Count(s => s == StateId.Ready));
        Assert.That((await client.ForceCheckAsync(new ForceCheckRequest(units.Select(u => u.Mac).ToList(), null), CancellationToken.None)).Notified, Has.Count.EqualTo(count));
        foreach (var u in units)
        {
            await server.WaitForAsync(async () => server.ChainOf(u.Mac).Count(s => s == StateId.Ready) > readies[u.Mac] && (await server.Store.Units.GetUnitAsync(u.Mac))!.State == "Ready", $"{u.Mac} checked again");
        }
        Assert.That(await server.Store.History.ListUpdateReportsAsync(), Has.Count.EqualTo(before), "no update offered again");
        Assert.That(await units.SelectAsync(async u => (await server.Store.Units.GetUnitAsync(u.Mac))!.Pattern), Is.All.EqualTo(DemoCatalogue.Pattern2));
    }

    [Test]
    public async Task A_way_back_is_taken_only_by_a_target_or_the_open_wave_of_a_rollout_that_holds_it()
    {
        var (started, units) = await StartFleetAsync(3);
        await using var server = started;
        using var client = server.Operator();
        var macs = units.Select(u => u.Mac).Order().ToList();
        await RolloutCatalogue.AddPattern3Async(server, client);
        // every unit forward to pattern 3 by its target, then the way back is added and the targets cleared
        foreach (var m in macs) { await Call<UnitView>(client, HttpMethod.Put, $"/api/v1/units/{m}/target-pattern", new TargetPatternRequest("pattern-3")); }
        await client.ForceCheckAsync(new ForceCheckRequest(macs, null), CancellationToken.None);
        await server.WaitForAsync(() => macs.AllAsync(async m => await server.Store.Units.GetUnitAsync(m) is { Pattern: "pattern-3", State: "Ready" }), "every unit on pattern 3", TimeSpan.FromSeconds(90));
        await RolloutCatalogue.AddWayBackAsync(server, client);
        foreach (var m in macs) { await Call<UnitView>(client, HttpMethod.Put, $"/api/v1/units/{m}/target-pattern", new TargetPatternRequest(null)); }

        async Task CheckAndWaitAsync(IReadOnlyList<string> which)
        {
            var readies = which.ToDictionary(m => m, m => server.ChainOf(m).Count(s => s == StateId.Ready));
            Assert.That((await client.ForceCheckAsync(new ForceCheckRequest(which.ToList(), null), CancellationToken.None)).Notified, Is.EquivalentTo(which));
            foreach (var m in which)
            {
                await server.WaitForAsync(async () => server.ChainOf(m).Count(s => s == StateId.Ready) > readies[m] && (await server.Store.Units.GetUnitAsync(m))!.State == "Ready", $"{m} checked again");
            }
        }

        // without a target, a check does not take the way back
        await CheckAndWaitAsync(macs);
        Assert.That(await macs.SelectAsync(async m => (await server.Store.Units.GetUnitAsync(m))!.Pattern), Is.All.EqualTo("pattern-3"));
        Assert.That((await server.Store.History.ListUpdateReportsAsync()).Where(r => r.UpdateId == "p3-to-p2"), Is.Empty);

        // a rollout back: its first wave (one unit) returns; the second waits an hour and its units stay, checked or not
        await Call<GroupView>(client, HttpMethod.Post, FleetApi.GroupsRoute, new NewGroup("on-3", null, new GroupFilter(Pattern: "pattern-3")));
        await Call<RolloutView>(client, HttpMethod.Post, RolloutsApi.Route,
            new NewRollout("back", "on-3", "pattern-3", DemoCatalogue.Pattern2, [new(Count: 1), new(Percent: 100)], MinWaveSeconds: 3600));
        var first = (await server.Store.Rollouts.RolloutMembersAsync((await server.Store.Rollouts.GetRolloutAsync("back"))!)).Single(m => m.Wave == 0).Mac;
        await server.WaitForAsync(async () => await server.Store.Units.GetUnitAsync(first) is { State: "Ready" } row && row.Pattern == DemoCatalogue.Pattern2
            && (await server.Store.History.ListUpdateReportsAsync(first)).Any(r => r.UpdateId == "p3-to-p2" && r.Success != 0), "the first wave back on pattern 2", TimeSpan.FromSeconds(90));
        var rest = macs.Where(m => m != first).ToList();
        Assert.That((await server.Store.Units.GetUnitAsync(first))!.TargetPattern, Is.EqualTo(DemoCatalogue.Pattern2), "taken back: its target is the pattern it went back to");
        await CheckAndWaitAsync([first]);
        Assert.That((await server.Store.Units.GetUnitAsync(first))!.Pattern, Is.EqualTo(DemoCatalogue.Pattern2), "back, it is not offered the way forward again");
        await CheckAndWaitAsync(rest);
        Assert.That(await rest.SelectAsync(async m => (await server.Store.Units.GetUnitAsync(m))!.Pattern), Is.All.EqualTo("pattern-3"), "units of the wave not open stay");
        Assert.That((await server.Store.History.ListUpdateReportsAsync()).Where(r => r.UpdateId == "p3-to-p2").Select(r => r.Mac), Is.EqualTo(new[] { first }), "one way back, once");
        Assert.That((await server.Store.History.ListUpdateReportsAsync(first)).Count(r => r.UpdateId == "p2-to-p3"), Is.EqualTo(1), "the way forward once, by its target, never again");
    }

    [Test]
    public async Task Hostile_tags_groups_and_rollouts_are_refused_with_400_and_change_nothing()
    {
        await using var server = await StartAsync();
        using var client = server.Operator();
        var mac = (await server.AddUnitsAsync(1))[0].Mac;
        var before = HostileInputTests.Snapshot(server);
        var hostile = new (string Path, HttpMethod Method, object Body)[]
        {
            ($"/api/v1/units/{mac}/tags", HttpMethod.Put, new { tags = new[] { "ok", "bad\ntag" } }),
            ($"/api/v1/units/{mac}/tags", HttpMethod.Put, new { tags = new[] { "Upper" } }),
            ($"/api/v1/units/{mac}/tags", HttpMethod.Put, new { tags = Enumerable.Range(0, 40).Select(i => $"t{i}").ToArray() }),
            ($"/api/v1/units/{mac}/tags", HttpMethod.Put, new { tags = (string[]?)null }),
            (FleetApi.GroupsRoute, HttpMethod.Post, new { name = "g", macs = new[] { "not-a-mac" } }),
            (FleetApi.GroupsRoute, HttpMethod.Post, new { name = "g", macs = new[] { "02:00:00:00:99:99" } }),
            (FleetApi.GroupsRoute, HttpMethod.Post, new { name = "g\u0000", filter = new { } }),
            (FleetApi.GroupsRoute, HttpMethod.Post, new { name = "g", macs = new[] { mac }, filter = new { } }),
            (FleetApi.GroupsRoute, HttpMethod.Post, new { name = "g", filter = new { version = "1.0" } }),
            (FleetApi.GroupsRoute, HttpMethod.Post, new { name = "g", filter = new { tags = new[] { "a b" } } }),
            (RolloutsApi.Route, HttpMethod.Post, new { name = "r", group = "nope", fromPattern = "a", toPattern = "b", waves = new[] { new { count = 1 } } }),
            (RolloutsApi.Route, HttpMethod.Post, new { name = "r", group = "g", fromPattern = "a", toPattern = "b", waves = new[] { new { count = 1, percent = 5 } } }),
            (RolloutsApi.Route, HttpMethod.Post, new { name = "r", group = "g", fromPattern = "a", toPattern = "b", waves = new[] { new { percent = 500 } } }),
            (RolloutsApi.Route, HttpMethod.Post, new { name = "r", group = "g", fromPattern = "a", toPattern = "b", waves = new[] { new { count = 1 } }, errorPercent = -1 }),
            (RolloutsApi.Route, HttpMethod.Post, new { name = "r", group = "g", fromPattern = "a", toPattern = "b", waves = new[] { new { count = 1 } }, onError = "explode" }),
            (FleetApi.GroupsRoute, HttpMethod.Post, new { name = "g", filter = new { board = "rev\u0007a" } }),
            (FleetApi.GroupsRoute, HttpMethod.Post, new { name = "g", filter = new { pattern = "p 2" } }),
            (FleetApi.GroupsRoute, HttpMethod.Post, new { name = "g", filter = new { app = "vcp", version = "1.0\n" } }),
            (FleetApi.GroupsRoute, HttpMethod.Post, new { name = "g", filter = new { tags = new string?[] { null } } }),
            (FleetApi.GroupsRoute, HttpMethod.Post, new { name = "g", macs = new string?[] { null } }),
            (RolloutsApi.Route, HttpMethod.Post, new { name = "r\r\n", group = "g", fromPattern = "a", toPattern = "b", waves = new[] { new { count = 1 } } }),
            (RolloutsApi.Route, HttpMethod.Post, new { name = "r", group = "g", fromPattern = "a", toPattern = "b", waves = (object[]?)null }),
            (RolloutsApi.Route, HttpMethod.Post, new { name = "r", group = "g", fromPattern = "a", toPattern = "b", waves = Array.Empty<object>() }),
            (RolloutsApi.Route, HttpMethod.Post, new { name = "r", group = "g", fromPattern = "a", toPattern = "b", waves = new[] { new { count = 1 } }, successPercent = 0 }),
            (RolloutsApi.Route, HttpMethod.Post, new { name = "r", group = "g", fromPattern = "a", toPattern = "b", waves = new[] { new { count = 1 } }, minWaveSeconds = -1 }),
            (RolloutsApi.Route, HttpMethod.Post, new { name = "r", group = "g", fromPattern = "a", toPattern = "b", waves = new object[] { new { group = "a b" }, new { percent = 100 } } }),
            (RolloutsApi.Route, HttpMethod.Post, new { name = "r", group = "g", fromPattern = "a", toPattern = "b", waves = new object[] { new { group = "c", count = 1 }, new { percent = 100 } } }),
            (RolloutsApi.Route, HttpMethod.Post, new { name = "r", group = "g", fromPattern = "a", toPattern = "b", waves = new object[] { new { group = "c\n" }, new { percent = 100 } } }),
            (RolloutsApi.Route, HttpMethod.Post, new { name = "r", group = "g", fromPattern = "a", toPattern = "b", waves = new object[] { new { percent = 10 }, new { group = "c" } } }),
            (RolloutsApi.Route, HttpMethod.Post, new { name = "r", group = "g", fromPattern = "a", toPattern = "b", waves = new object[] { new { group = 5 }, new { percent = 100 } } }),
            (RolloutsApi.Route, HttpMethod.Post, new { name = "r", group = "g", fromPattern = "a", toPattern = "b", waves = new[] { new { count = 1 } }, onError = "Revert" }),
            (FleetApi.GroupsRoute, HttpMethod.Post, new { name = "g", filter = new { }, window = "mon-fri 25:00-05:00" }),
            (FleetApi.GroupsRoute, HttpMethod.Post, new { name = "g", filter = new { }, window = "mon 01:00-05:00\n" }),
            (FleetApi.GroupsRoute, HttpMethod.Post, new { name = "g", filter = new { }, window = "01:00-01:00" }),
            (FleetApi.GroupsRoute, HttpMethod.Post, new { name = "g", filter = new { }, window = "someday 01:00-02:00" }),
            (FleetApi.GroupsRoute, HttpMethod.Post, new { name = "g", filter = new { }, window = "" }),
            (FleetApi.GroupsRoute, HttpMethod.Post, new { name = "g", filter = new { }, window = new string('1', 5000) }),
        };
        foreach (var (path, method, body) in hostile)
        {
            var e = Assert.ThrowsAsync<OperatorApiException>(() => client.SendJsonAsync(method, path, body, CancellationToken.None), $"{method} {path} {JsonSerializer.Serialize(body)}")!;
            Assert.That(e.Status, Is.EqualTo(400), $"{method} {path} {JsonSerializer.Serialize(body)}: {e.Message}");
            if (JsonSerializer.Serialize(body).Contains("\"onError\"", StringComparison.Ordinal))
            {
                // refused for its onError, not for the patterns a and b that do not exist either
                Assert.That(e.Message, Does.Contain("onError"), JsonSerializer.Serialize(body));
            }
        }
        Assert.That(HostileInputTests.Snapshot(server), Is.EqualTo(before), "a refused request changed the database");

        // and the accepted forms work: tags, a CSV import with a tags column, a group by tag
        await Call<UnitTagsView>(client, HttpMethod.Put, $"/api/v1/units/{mac}/tags", new UnitTagsRequest(["region:kanto", "beta", "beta"]));
        Assert.That(await server.Store.Fleet.GetTagsAsync(mac), Is.EqualTo(new[] { "beta", "region:kanto" }));
        using var csv = new StringContent("mac,serial,tags\n02:00:00:00:0a:01,SN-A1,beta lab\n02:00:00:00:0a:02,SN-A2,\n", System.Text.Encoding.UTF8, "text/csv");
        await client.SendAsync(HttpMethod.Post, "/api/v1/units/bulk", csv, CancellationToken.None);
        Assert.That(await server.Store.Fleet.GetTagsAsync("02:00:00:00:0a:01"), Is.EqualTo(new[] { "beta", "lab" }));
        var beforeCsv = HostileInputTests.Snapshot(server);
        using var badCsv = new StringContent("mac,serial,tags\n02:00:00:00:0a:03,SN-A3,ok\n02:00:00:00:0a:04,SN-A4,BAD\n", System.Text.Encoding.UTF8, "text/csv");
        var csvError = Assert.ThrowsAsync<OperatorApiException>(() => client.SendAsync(HttpMethod.Post, "/api/v1/units/bulk", badCsv, CancellationToken.None))!;
        Assert.That(csvError.Status, Is.EqualTo(400));
        Assert.That(csvError.Body, Does.Contain("tags"));
        Assert.That(HostileInputTests.Snapshot(server), Is.EqualTo(beforeCsv), "a table with a bad tag registered something");
        var beta = await Call<GroupView>(client, HttpMethod.Post, FleetApi.GroupsRoute, new NewGroup("beta", null, new GroupFilter(Tags: ["beta"])));
        Assert.That(beta.Members, Is.EqualTo(new[] { "02:00:00:00:0a:01", mac }.Order()));
        var tagged = await Call<List<UnitView>>(client, HttpMethod.Get, $"{FleetApi.TagsRoute}/beta/units");
        Assert.That(tagged.Select(u => u.Mac), Is.EquivalentTo(beta.Members!));
        Assert.That((await server.Store.ListAuditAsync(50)).Any(a => a.Action == "unit.tags" && a.Target == mac), Is.True);

        // a group's maintenance window: a bad one is refused (400) and changes nothing; a good one is stored as written back
        var beforeWindow = HostileInputTests.Snapshot(server);
        foreach (var bad in new object[] { new { window = "mon 1:00-5:00" }, new { window = "mon\u000001:00-05:00" }, new { window = 5 }, new { window = "mon-fri 01:00-05:00 01:00-02:00" } })
        {
            var e = Assert.ThrowsAsync<OperatorApiException>(() => client.SendJsonAsync(HttpMethod.Put, $"{FleetApi.GroupsRoute}/beta/window", bad, CancellationToken.None))!;
            Assert.That(e.Status, Is.EqualTo(400), JsonSerializer.Serialize(bad));
        }
        Assert.That(Assert.ThrowsAsync<OperatorApiException>(() => client.SendJsonAsync(HttpMethod.Put, $"{FleetApi.GroupsRoute}/nope/window", new { window = "01:00-02:00" }, CancellationToken.None))!.Status,
            Is.EqualTo(404));
        Assert.That(HostileInputTests.Snapshot(server), Is.EqualTo(beforeWindow), "a refused window changed the database");
        var windowed = await Call<GroupView>(client, HttpMethod.Put, $"{FleetApi.GroupsRoute}/beta/window", new GroupWindowRequest("Sat,Sun 22:00-06:00"));
        Assert.That(windowed.Window, Is.EqualTo("sun,sat 22:00-06:00"));
        Assert.That((await server.Store.Fleet.GetGroupAsync("beta"))!.MaintenanceWindow, Is.EqualTo("sun,sat 22:00-06:00"));
        Assert.That((await server.Store.ListAuditAsync(50)).Single(a => a.Action == "group.window").Detail, Is.EqualTo("sun,sat 22:00-06:00"));
        // a body without the window, or with its name misspelled, is refused (before: read as "clear it", 200)
        var beforeMissing = HostileInputTests.Snapshot(server);
        foreach (var missing in new object[] { new { }, new { windw = "01:00-02:00" } })
        {
            var e = Assert.ThrowsAsync<OperatorApiException>(() => client.SendJsonAsync(HttpMethod.Put, $"{FleetApi.GroupsRoute}/beta/window", missing, CancellationToken.None))!;
            Assert.That(e.Status, Is.EqualTo(400), JsonSerializer.Serialize(missing));
        }
        Assert.That(HostileInputTests.Snapshot(server), Is.EqualTo(beforeMissing), "a body without the window changed the database");
        Assert.That((await server.Store.Fleet.GetGroupAsync("beta"))!.MaintenanceWindow, Is.EqualTo("sun,sat 22:00-06:00"));
        var created = await Call<GroupView>(client, HttpMethod.Post, FleetApi.GroupsRoute, new NewGroup("nightly", null, new GroupFilter(), "01:00-05:00"));
        Assert.That(created.Window, Is.EqualTo("01:00-05:00"));
    }

    [Test]
    public async Task A_group_window_a_rollout_could_never_use_is_a_409_problem_naming_the_group_the_window_and_the_policy()
    {
        await using var server = await StartAsync();
        using var client = server.Operator();
        var units = await server.AddUnitsAsync(2);
        var onPattern2 = new Inventory(DemoCatalogue.HardwareVersion, DemoCatalogue.OsVersion, DemoCatalogue.Pattern2Applications);
        foreach (var u in units) { await server.Store.Units.RecordInventoryAsync(u.Mac, onPattern2, DemoCatalogue.Pattern2, UnitStates.Ready); }
        await RolloutCatalogue.AddPattern3Async(server, client, importance: 2); // waits for the policy's maintenance window 03:00-04:00
        await client.SendJsonAsync(HttpMethod.Post, FleetApi.GroupsRoute, new NewGroup("lab", null, new GroupFilter(Pattern: DemoCatalogue.Pattern2), "sat,sun 04:00-06:00"),
            CancellationToken.None);
        var rollout = new NewRollout("lab-p3", "lab", DemoCatalogue.Pattern2, "pattern-3", [new(Percent: 100)]);
        var before = HostileInputTests.Snapshot(server);

        var refused = Assert.ThrowsAsync<OperatorApiException>(() => client.SendJsonAsync(HttpMethod.Post, RolloutsApi.Route, rollout, CancellationToken.None))!;
        Assert.That(refused.Status, Is.EqualTo(409));
        Assert.That(refused.Message, Does.Contain("group lab's maintenance window sun,sat 04:00-06:00 never overlaps the update policy's maintenance window 03:00-04:00")
            .And.Contain("importance 2").And.Contain("rollout lab-p3").And.Contain("nothing was stored"));
        Assert.That(HostileInputTests.Snapshot(server), Is.EqualTo(before), "a refused rollout changed the database");

        // a window that meets the policy's: the rollout is created; then a change to a window it could never use is a 409 too
        await client.SendJsonAsync(HttpMethod.Put, $"{FleetApi.GroupsRoute}/lab/window", new GroupWindowRequest("sat,sun 03:30-06:00"), CancellationToken.None);
        await client.SendJsonAsync(HttpMethod.Post, RolloutsApi.Route, rollout, CancellationToken.None);
        before = HostileInputTests.Snapshot(server);
        refused = Assert.ThrowsAsync<OperatorApiException>(() =>
            client.SendJsonAsync(HttpMethod.Put, $"{FleetApi.GroupsRoute}/lab/window", new GroupWindowRequest("22:00-03:00"), CancellationToken.None))!;
        Assert.That(refused.Status, Is.EqualTo(409));
        Assert.That(refused.Message, Does.Contain("group lab's maintenance window 22:00-03:00 never overlaps").And.Contain("rollout lab-p3").And.Contain("nothing was changed"));
        Assert.That(HostileInputTests.Snapshot(server), Is.EqualTo(before), "a refused window changed the database");
        Assert.That((await server.Store.Fleet.GetGroupAsync("lab"))!.MaintenanceWindow, Is.EqualTo("sun,sat 03:30-06:00"));

        // and so is a change of the update policy that moves its maintenance window away from the group's
        refused = Assert.ThrowsAsync<OperatorApiException>(() => client.SendJsonAsync(HttpMethod.Put, "/api/v1/settings/update-policy",
            UpdatePolicy.Default with { MaintenanceStartHour = 1, MaintenanceEndHour = 2 }, CancellationToken.None))!;
        Assert.That(refused.Status, Is.EqualTo(409));
        Assert.That(refused.Message, Does.Contain("group lab's maintenance window sun,sat 03:30-06:00 never overlaps the update policy's maintenance window 01:00-02:00")
            .And.Contain("nothing was changed"));
        Assert.That(HostileInputTests.Snapshot(server), Is.EqualTo(before), "a refused policy changed the database");
        await client.SendJsonAsync(HttpMethod.Put, "/api/v1/settings/update-policy", UpdatePolicy.Default with { MaintenanceStartHour = 5, MaintenanceEndHour = 6 }, CancellationToken.None);
        Assert.That((await PolicySettings.GetAsync(server.Store)).MaintenanceStartHour, Is.EqualTo(5), "hours that meet the group's window are stored");
    }

    [Test]
    public async Task A_unit_window_or_a_group_window_a_member_could_never_use_is_a_409_problem_naming_the_unit_the_rollout_and_both_windows()
    {
        await using var server = await StartAsync();
        using var client = server.Operator();
        var units = await server.AddUnitsAsync(2);
        var onPattern2 = new Inventory(DemoCatalogue.HardwareVersion, DemoCatalogue.OsVersion, DemoCatalogue.Pattern2Applications);
        foreach (var u in units) { await server.Store.Units.RecordInventoryAsync(u.Mac, onPattern2, DemoCatalogue.Pattern2, UnitStates.Ready); }
        await RolloutCatalogue.AddPattern3Async(server, client, importance: 3); // waits for the low-utilisation window (the policy's 02:00-05:00, or the unit's own)
        await client.SendJsonAsync(HttpMethod.Post, FleetApi.GroupsRoute, new NewGroup("lab", null, new GroupFilter(Pattern: DemoCatalogue.Pattern2), "01:00-05:00"),
            CancellationToken.None);
        await client.SendJsonAsync(HttpMethod.Post, RolloutsApi.Route, new NewRollout("lab-p3", "lab", DemoCatalogue.Pattern2, "pattern-3", [new(Percent: 100)]),
            CancellationToken.None);
        var path = $"/api/v1/units/{units[0].Mac}/update-window";
        var before = HostileInputTests.Snapshot(server);

        var refused = Assert.ThrowsAsync<OperatorApiException>(() => client.SendJsonAsync(HttpMethod.Put, path,
            new Tsunagu.Server.Units.Windows.UpdateWindowRequest(10, 12, "Asia/Tokyo"), CancellationToken.None))!;
        Assert.That(refused.Status, Is.EqualTo(409));
        Assert.That(refused.Message, Does.Contain($"unit {units[0].Mac}'s own low-utilisation hours 10:00-12:00 never meet group lab's maintenance window 01:00-05:00")
            .And.Contain("rollout lab-p3").And.Contain("; nothing was changed"));
        Assert.That(HostileInputTests.Snapshot(server), Is.EqualTo(before), "a refused unit window changed the database");

        // hours that meet it are stored; then a group window that never meets them is a 409 naming the unit
        await client.SendJsonAsync(HttpMethod.Put, path, new Tsunagu.Server.Units.Windows.UpdateWindowRequest(4, 12, null), CancellationToken.None);
        before = HostileInputTests.Snapshot(server);
        refused = Assert.ThrowsAsync<OperatorApiException>(() =>
            client.SendJsonAsync(HttpMethod.Put, $"{FleetApi.GroupsRoute}/lab/window", new GroupWindowRequest("02:00-04:00"), CancellationToken.None))!;
        Assert.That(refused.Status, Is.EqualTo(409));
        Assert.That(refused.Message, Does.Contain($"group lab's maintenance window 02:00-04:00 never meets the own low-utilisation hours of 1 unit(s) ({units[0].Mac} 04:00-12:00)")
            .And.Contain("rollout lab-p3").And.Contain("nothing was changed"));
        Assert.That(HostileInputTests.Snapshot(server), Is.EqualTo(before), "a refused group window changed the database");
    }

    [Test]
    public async Task A_rollout_whose_group_window_never_meets_a_members_own_hours_is_a_409_problem_and_changes_nothing()
    {
        await using var server = await StartAsync();
        using var client = server.Operator();
        var units = await server.AddUnitsAsync(2);
        var onPattern2 = new Inventory(DemoCatalogue.HardwareVersion, DemoCatalogue.OsVersion, DemoCatalogue.Pattern2Applications);
        foreach (var u in units) { await server.Store.Units.RecordInventoryAsync(u.Mac, onPattern2, DemoCatalogue.Pattern2, UnitStates.Ready); }
        await RolloutCatalogue.AddPattern3Async(server, client, importance: 3);
        await client.SendJsonAsync(HttpMethod.Post, FleetApi.GroupsRoute, new NewGroup("lab", null, new GroupFilter(Pattern: DemoCatalogue.Pattern2), "01:00-05:00"),
            CancellationToken.None);
        // no rollout yet: the unit's own hours are its own business
        await client.SendJsonAsync(HttpMethod.Put, $"/api/v1/units/{units[1].Mac}/update-window",
            new Tsunagu.Server.Units.Windows.UpdateWindowRequest(10, 12, null), CancellationToken.None);
        var before = HostileInputTests.Snapshot(server);

        var refused = Assert.ThrowsAsync<OperatorApiException>(() => client.SendJsonAsync(HttpMethod.Post, RolloutsApi.Route,
            new NewRollout("lab-p3", "lab", DemoCatalogue.Pattern2, "pattern-3", [new(Percent: 100)]), CancellationToken.None))!;
        Assert.That(refused.Status, Is.EqualTo(409));
        Assert.That(refused.Message, Does.Contain($"group lab's maintenance window 01:00-05:00 never meets the own low-utilisation hours of 1 unit(s) ({units[1].Mac} 10:00-12:00)")
            .And.Contain("rollout lab-p3").And.Contain("nothing was stored"));
        Assert.That(HostileInputTests.Snapshot(server), Is.EqualTo(before), "a refused rollout changed the database");
    }
}
