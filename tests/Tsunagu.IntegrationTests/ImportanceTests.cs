using System.Text.Json;
using Tsunagu.Cli.Factory;
using Tsunagu.Cli.Fleet;
using Tsunagu.Demo;
using Tsunagu.Firmware.Supervision;
using Tsunagu.Protocol;
using Tsunagu.Server.Apis;
using Tsunagu.Server.Data;
using Tsunagu.Server.Units.Windows;

namespace Tsunagu.IntegrationTests;

/// <summary>
/// Importance end to end (patent 0048, 0064, 0070) with the real server, broker and supervisor: a configuration push
/// does not force a deferred update, a deferred update is looked at again when its wait can end, the importance-3
/// window is the unit's own in its time zone, and a failed change is retried by the host once the unit is healthy.
/// </summary>
[NonParallelizable]
public class ImportanceTests
{
    private static readonly JsonSerializerOptions Json = JsonSerializerOptions.Web;

    [SetUp]
    public void SetUp() => TestServer.DatabaseKind.Value = "sqlite";

    [TearDown]
    public void TearDown()
    {
        TestServer.Configure.Value = null;
        TestServer.Time.Value = null;
    }

    private static async Task<T> Call<T>(OperatorClient client, HttpMethod method, string path, object? body = null) =>
        JsonSerializer.Deserialize<T>(body is null ? await client.SendAsync(method, path, null, CancellationToken.None)
            : await client.SendJsonAsync(method, path, body, CancellationToken.None), Json)!;

    /// <summary>A started server with one unit Ready on pattern 2 and listening for pushes.</summary>
    private static async Task<(TestServer Server, OperatorClient Client, FleetUnit Unit)> ReadyUnitAsync(SupervisorOptions? options = null)
    {
        var server = await TestServer.StartAsync(options);
        var client = server.Operator();
        var unit = (await server.AddUnitsAsync(1))[0];
        server.Fleet.StartAll();
        await server.WaitReadyAsync(unit);
        await server.WaitForAsync(() => unit.Supervisor.Context.Push?.IsConnected == true, "the unit listening for pushes");
        return (server, client, unit);
    }

    private static int UtcHour => DateTimeOffset.UtcNow.Hour;

    [Test]
    public async Task A_configuration_push_does_not_install_a_deferred_update_but_an_operator_check_does()
    {
        var (server, client, unit) = await ReadyUnitAsync();
        await using var _ = server;
        using var __ = client;
        // importance 1 with a maintenance window that never opens: only a forced check may install it
        await Call<UpdatePolicy>(client, HttpMethod.Put, "/api/v1/settings/update-policy", new UpdatePolicy(0.5, 0.5, 2, 5, MaintenanceStartHour: 0, MaintenanceEndHour: 0));
        await RolloutCatalogue.AddPattern3Async(server, client, importance: 1);

        var before = (await server.Store.ServiceConfigs.ListUnitConfigsAsync(unit.Mac)).Count;
        var changed = DemoCatalogue.StandardServices with
        {
            ContentFilter = DemoCatalogue.StandardServices.ContentFilter with { BlockedDomains = [.. DemoCatalogue.StandardServices.ContentFilter.BlockedDomains, "push.example"] },
        };
        var assigned = await Call<UnitConfigAssigned>(client, HttpMethod.Put, $"/api/v1/units/{unit.Mac}/service-config", changed);
        Assert.That(assigned.PushWarning, Is.Null, "the configuration push was sent");
        await server.WaitForAsync(async () => (await server.Store.ServiceConfigs.ListUnitConfigsAsync(unit.Mac)).Single(r => r.Revision == assigned.Revision).Status == ConfigStatus.Final,
            "the pushed revision final");
        Assert.That(await server.Store.ServiceConfigs.ListUnitConfigsAsync(unit.Mac), Has.Count.EqualTo(before + 1));
        Assert.That((await server.Store.Units.GetUnitAsync(unit.Mac))!.Pattern, Is.EqualTo(DemoCatalogue.Pattern2), "a configuration push installed the deferred importance-1 update");
        Assert.That((await server.Store.History.ListUnitEventsAsync(unit.Mac, 50)).Any(e => e.Detail?.Contains("p2-to-p3 deferred", StringComparison.Ordinal) == true), Is.True,
            "the check the push caused saw the update and deferred it");

        // the operator's forced check does install it (patent 0053, 0071)
        await Call<ForceCheckResponse>(client, HttpMethod.Post, "/api/v1/units/check", new ForceCheckRequest([unit.Mac], null));
        await server.WaitForAsync(async () => await server.Store.Units.GetUnitAsync(unit.Mac) is { Pattern: "pattern-3", State: "Ready" }, "the unit on pattern-3");
    }

    [Test]
    public async Task A_deferred_update_is_looked_at_again_shortly_not_a_check_period_later()
    {
        // the host's check period stays a day; a busy unit is looked at again after DeferredRecheck
        var (server, client, unit) = await ReadyUnitAsync(TestServer.FastOptions with { DeferredRecheck = TimeSpan.FromMilliseconds(500) });
        await using var _ = server;
        using var __ = client;
        await RolloutCatalogue.AddPattern3Async(server, client, importance: 4);
        unit.Hardware.Load.Cpu = 0.95;
        unit.Supervisor.RequestCheck(forced: false);
        await server.WaitForAsync(async () => (await server.Store.History.ListUnitEventsAsync(unit.Mac, 50)).Any(e => e.Detail?.Contains("p2-to-p3 deferred", StringComparison.Ordinal) == true),
            "the busy unit deferring the importance-4 update");
        Assert.That((await server.Store.Units.GetUnitAsync(unit.Mac))!.Pattern, Is.EqualTo(DemoCatalogue.Pattern2));
        unit.Hardware.Load.Cpu = 0.05; // the load drops: nothing else wakes the unit
        await server.WaitForAsync(async () => await server.Store.Units.GetUnitAsync(unit.Mac) is { Pattern: "pattern-3" }, "the update installed once the load dropped",
            TimeSpan.FromSeconds(30));
    }

    [Test]
    public async Task A_busy_host_defers_an_importance_4_update_and_it_installs_once_the_hosts_load_drops()
    {
        var (server, client, unit) = await ReadyUnitAsync(TestServer.FastOptions with { DeferredRecheck = TimeSpan.FromMilliseconds(500) });
        await using var _ = server;
        using var __ = client;
        await RolloutCatalogue.AddPattern3Async(server, client, importance: 4);
        unit.Hardware.Load.Cpu = 0.05; // the unit itself is idle: only the host's load holds the update back
        server.HostLoad.Value = 0.95;
        unit.Supervisor.RequestCheck(forced: false);
        await server.WaitForAsync(async () => (await server.Store.History.ListUnitEventsAsync(unit.Mac, 50)).Any(e => e.Detail?.Contains("host's load", StringComparison.Ordinal) == true),
            "the busy host deferring the importance-4 update");
        Assert.That((await server.Store.Units.GetUnitAsync(unit.Mac))!.Pattern, Is.EqualTo(DemoCatalogue.Pattern2));
        Assert.That((await server.Store.History.ListUpdateReportsAsync(unit.Mac)).Where(r => r.UpdateId == "p2-to-p3"), Is.Empty, "nothing installed while the host was busy");
        server.HostLoad.Value = 0.2; // the unit looks again after DeferredRecheck on its own
        await server.WaitForAsync(async () => await server.Store.Units.GetUnitAsync(unit.Mac) is { Pattern: "pattern-3" }, "the update installed once the host's load dropped",
            TimeSpan.FromSeconds(30));
    }

    [Test]
    public async Task The_importance_3_window_is_the_units_own_in_its_time_zone()
    {
        var (server, client, unit) = await ReadyUnitAsync();
        await using var _ = server;
        using var __ = client;
        // the fleet's window is 12 hours away from now (UTC, the zone of this machine and of the unit)
        var away = (UtcHour + 12) % 24;
        await Call<UpdatePolicy>(client, HttpMethod.Put, "/api/v1/settings/update-policy", new UpdatePolicy(0.5, 0.5, away, (away + 1) % 24));
        await RolloutCatalogue.AddPattern3Async(server, client, importance: 3);
        unit.Supervisor.RequestCheck(forced: false);
        await server.WaitForAsync(async () => (await server.Store.History.ListUnitEventsAsync(unit.Mac, 50)).Any(e => e.Detail?.Contains("p2-to-p3 deferred", StringComparison.Ordinal) == true),
            "the update deferred outside the fleet's window");

        var path = $"/api/v1/units/{unit.Mac}/update-window";
        var fleet = await Call<UpdateWindowView>(client, HttpMethod.Get, path);
        Assert.That((fleet.LowWindowStartHour, fleet.OwnWindow, fleet.OwnTimeZone), Is.EqualTo((away, false, false)));
        // refused requests change nothing
        foreach (var bad in new object[]
                 {
                     new UpdateWindowRequest(3, null, null), new UpdateWindowRequest(3, 24, null), new UpdateWindowRequest(-1, 2, null),
                     new UpdateWindowRequest(null, null, "Mars/Olympus"), new UpdateWindowRequest(null, null, "../../etc/passwd"),
                     new UpdateWindowRequest(null, null, "Asia/Tokyo\n"),
                 })
        {
            var e = Assert.ThrowsAsync<OperatorApiException>(() => client.SendJsonAsync(HttpMethod.Put, path, bad, CancellationToken.None));
            Assert.That(e!.Status, Is.EqualTo(400), e.Message);
        }
        Assert.That(await Call<UpdateWindowView>(client, HttpMethod.Get, path), Is.EqualTo(fleet), "a refused request changed nothing");
        Assert.That(Assert.ThrowsAsync<OperatorApiException>(() => client.SendJsonAsync(HttpMethod.Put, "/api/v1/units/02:00:00:00:00:99/update-window",
            new UpdateWindowRequest(1, 2, null), CancellationToken.None))!.Status, Is.EqualTo(404));

        // the unit's own window: the two hours from now in Tokyo (UTC+9, no DST), which are not now in UTC
        var tokyo = TimeZoneInfo.ConvertTime(DateTimeOffset.UtcNow, TimeZoneInfo.FindSystemTimeZoneById("Asia/Tokyo")).Hour;
        var own = await Call<UpdateWindowView>(client, HttpMethod.Put, path, new UpdateWindowRequest(tokyo, (tokyo + 2) % 24, "Asia/Tokyo"));
        Assert.That((own.LowWindowStartHour, own.TimeZone, own.OwnWindow, own.OwnTimeZone), Is.EqualTo((tokyo, "Asia/Tokyo", true, true)));
        Assert.That((await server.Store.ListAuditAsync(10)).Any(a => a.Action == "unit.update-window" && a.Target == unit.Mac), Is.True);
        unit.Supervisor.RequestCheck(forced: false);
        await server.WaitForAsync(async () => await server.Store.Units.GetUnitAsync(unit.Mac) is { Pattern: "pattern-3" }, "the update installed inside the unit's own window, in its zone");
    }

    [Test]
    public async Task A_units_own_maintenance_window_holds_an_importance_4_update_on_host_and_unit_until_it_opens()
    {
        var (server, client, unit) = await ReadyUnitAsync();
        await using var _ = server;
        using var __ = client;
        await RolloutCatalogue.AddPattern3Async(server, client, importance: 4);
        unit.Hardware.Load.Cpu = 0.05; // idle: only the window can hold the update back
        var path = $"/api/v1/units/{unit.Mac}/update-window";
        var before = await Call<UpdateWindowView>(client, HttpMethod.Get, path);
        Assert.That(before.MaintenanceWindow, Is.Null);
        // hostile or contradictory requests are refused and change nothing
        foreach (var bad in new[]
                 {
                     new UpdateWindowRequest(null, null, null, "mon-fri 01:00-05:00; reboot"), new UpdateWindowRequest(null, null, null, "01:00-05:00\n"),
                     new UpdateWindowRequest(null, null, null, "01:00-01:00"), new UpdateWindowRequest(null, null, null, new string('1', 65)),
                     new UpdateWindowRequest(null, null, null, "funday 01:00-05:00"), new UpdateWindowRequest(1, 5, null, "01:00-05:00"),
                 })
        {
            var e = Assert.ThrowsAsync<OperatorApiException>(() => client.SendJsonAsync(HttpMethod.Put, path, bad, CancellationToken.None))!;
            Assert.That(e.Status, Is.EqualTo(400), e.Message);
            Assert.That(e.Message, Does.Not.Contain("\n"), "no control character is echoed");
        }
        Assert.That(await Call<UpdateWindowView>(client, HttpMethod.Get, path), Is.EqualTo(before), "a refused request changed nothing");

        // a daily window twelve hours away (UTC, this machine's zone and the unit's): closed now
        var away = (UtcHour + 12) % 24;
        var closed = $"{away:00}:00-{(away + 1) % 24:00}:00";
        var set = await Call<UpdateWindowView>(client, HttpMethod.Put, path, new UpdateWindowRequest(null, null, null, closed));
        Assert.That((set.MaintenanceWindow, set.OwnWindow), Is.EqualTo((closed, false)));
        Assert.That((await server.Store.ListAuditAsync(5)).First(a => a.Action == "unit.update-window").Detail, Does.Contain($"maintenance window {closed}"));
        unit.Supervisor.RequestCheck(forced: false);
        await server.WaitForAsync(async () => (await server.Store.History.ListUnitEventsAsync(unit.Mac, 50))
                .Any(e => e.Detail?.Contains($"p2-to-p3 deferred: importance 4 waits for the unit's maintenance window {closed}", StringComparison.Ordinal) == true),
            "the host deferring the update for the unit's own window");
        // the unit learned the window from the check's policy: it looks again when the window opens, not a minute later
        var now = DateTimeOffset.UtcNow;
        var opens = new DateTimeOffset(now.Year, now.Month, now.Day, away, 0, 0, TimeSpan.Zero);
        if (opens <= now) { opens = opens.AddDays(1); }
        await server.WaitForAsync(() => unit.Supervisor.Context.DeferredLookAt is { } at && at > now.AddHours(1), "the unit's next look set");
        Assert.That(unit.Supervisor.Context.DeferredLookAt, Is.EqualTo(opens), "the unit looks again when its window opens");
        Assert.That((await server.Store.Units.GetUnitAsync(unit.Mac))!.Pattern, Is.EqualTo(DemoCatalogue.Pattern2));

        // a window open now: the update installs
        var open = $"{UtcHour:00}:00-{(UtcHour + 2) % 24:00}:00";
        await Call<UpdateWindowView>(client, HttpMethod.Put, path, new UpdateWindowRequest(null, null, null, open));
        unit.Supervisor.RequestCheck(forced: false);
        await server.WaitForAsync(async () => await server.Store.Units.GetUnitAsync(unit.Mac) is { Pattern: "pattern-3" }, "the update installed inside the unit's own window");
    }

    [Test]
    public async Task A_failed_change_is_retried_by_the_host_once_the_unit_is_healthy_and_attempts_are_bounded()
    {
        // the server's clock moves past the backoff when the test says so, not with the machine's pace: a backoff far
        // longer than any step here, and a shift just past it
        const int backoffSeconds = 300;
        var clock = new ShiftedClock();
        TestServer.Time.Value = clock;
        TestServer.Configure.Value = o => { o.ConfigRetryAttempts = 2; o.ConfigRetryBackoffSeconds = backoffSeconds; };
        var pastBackoff = TimeSpan.FromSeconds(backoffSeconds + 1);
        var (server, client, unit) = await ReadyUnitAsync();
        await using var _ = server;
        using var __ = client;
        var checker = unit.Hardware.Services.RefuseChecks;
        var nft = Path.Combine(unit.Hardware.Data.Root, "services", "current", "dnsmasq.conf");
        ServiceConfiguration Blocking(string domain) => DemoCatalogue.StandardServices with
        {
            ContentFilter = DemoCatalogue.StandardServices.ContentFilter with { BlockedDomains = [.. DemoCatalogue.StandardServices.ContentFilter.BlockedDomains, domain] },
        };
        async Task<UnitConfigRow> RevisionAsync(long r) => (await server.Store.ServiceConfigs.ListUnitConfigsAsync(unit.Mac)).Single(c => c.Revision == r);

        // a change the unit cannot apply now: it stays on its last good configuration, the host keeps the failed revision
        checker["dnsmasq"] = "transient refusal";
        var first = (await Call<UnitConfigAssigned>(client, HttpMethod.Put, $"/api/v1/units/{unit.Mac}/service-config", Blocking("one.example"))).Revision;
        await server.WaitForAsync(async () => (await RevisionAsync(first)).Status == ConfigStatus.Failed, "the change failed on the unit");
        await server.WaitReadyAsync(unit, 2);
        Assert.That(File.ReadAllText(nft), Does.Not.Contain("one.example"), "the unit stays on its last good configuration");
        Assert.That((await server.Store.ServiceConfigs.LatestUnitConfigAsync(unit.Mac))!.Revision, Is.EqualTo(first), "no retry before the backoff");
        checker.Remove("dnsmasq");

        // healthy again after the backoff: the host retries it as attempt 2, and it becomes final
        clock.Advance(pastBackoff);
        unit.Supervisor.RequestCheck(forced: false);
        await server.WaitForAsync(async () => await server.Store.ServiceConfigs.LatestUnitConfigAsync(unit.Mac) is { Revision: var r, Status: ConfigStatus.Final } && r == first + 1, "the retry final");
        var retry = await RevisionAsync(first + 1);
        Assert.That((retry.Attempt, retry.RetryOf, retry.Origin, retry.Document), Is.EqualTo((2L, (long?)first, (await RevisionAsync(first)).Origin, (await RevisionAsync(first)).Document)));
        Assert.That(File.ReadAllText(nft), Does.Contain("one.example"));
        Assert.That((await server.Store.ListAuditAsync(20)).Count(a => a.Action == "unit.service-config.retry" && a.Target == unit.Mac), Is.EqualTo(1));

        // a change that keeps failing is tried ConfigRetryAttempts times in all, then left failed
        checker["dnsmasq"] = "lasting refusal";
        var second = (await Call<UnitConfigAssigned>(client, HttpMethod.Put, $"/api/v1/units/{unit.Mac}/service-config", Blocking("two.example"))).Revision;
        await server.WaitForAsync(async () => (await RevisionAsync(second)).Status == ConfigStatus.Failed, "the second change failed");
        clock.Advance(pastBackoff);
        unit.Supervisor.RequestCheck(forced: false);
        await server.WaitForAsync(async () => await server.Store.ServiceConfigs.LatestUnitConfigAsync(unit.Mac) is { Status: ConfigStatus.Failed, Attempt: 2 }, "the retry failed too");
        for (var i = 0; i < 2; i++)
        {
            clock.Advance(pastBackoff);
            var readies = (await server.Store.History.ListUnitEventsAsync(unit.Mac, 500)).Count(e => e.Kind == UnitEventKinds.Ready);
            unit.Supervisor.RequestCheck(forced: false);
            await server.WaitForAsync(async () => (await server.Store.History.ListUnitEventsAsync(unit.Mac, 500)).Count(e => e.Kind == UnitEventKinds.Ready) > readies, "another ready report");
        }
        var all = await server.Store.ServiceConfigs.ListUnitConfigsAsync(unit.Mac);
        Assert.That(all.Count(c => c.Revision >= second), Is.EqualTo(2), "one retry, no more: attempts are bounded");
        Assert.That(all.Last().Status, Is.EqualTo(ConfigStatus.Failed));
        Assert.That(File.ReadAllText(nft), Does.Contain("one.example").And.Not.Contain("two.example"), "still on the last good configuration");
    }
}
