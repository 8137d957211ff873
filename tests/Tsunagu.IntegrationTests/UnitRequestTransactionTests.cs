using System.Globalization;
using System.Net;
using System.Net.Http.Json;
using Tsunagu.Cli.Factory;
using Tsunagu.Demo;
using Tsunagu.Protocol;
using Tsunagu.Server.Data;
using Tsunagu.Server.Fleet;
using Tsunagu.Server.Fleet.Rollouts;

namespace Tsunagu.IntegrationTests;

/// <summary>
/// A unit's request writes all of what it records or none of it, on SQLite and PostgreSQL: a fault injected into its
/// last write (a trigger that aborts it), or the unit hanging up while that write waits for a lock, leaves every table as
/// it was; the same request without the fault then records all of it (and a rolled back periodic check is not taken
/// for written).
/// </summary>
[NonParallelizable]
public class UnitRequestTransactionTests
{
    /// <summary>Makes every <paramref name="operation"/> (INSERT, UPDATE) on <paramref name="table"/> matching <paramref name="when"/> fail, as a broken store would.</summary>
    private static void InjectFault(TestServer server, string operation, string table, string when)
    {
        if (server.Store.Database.Kind == DatabaseKind.Postgres)
        {
            server.ExecuteSql("CREATE OR REPLACE FUNCTION injected_fault() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'injected fault'; END $$");
            server.ExecuteSql($"CREATE TRIGGER injected_fault BEFORE {operation} ON {table} FOR EACH ROW WHEN ({when}) EXECUTE FUNCTION injected_fault()");
        }
        else
        {
            server.ExecuteSql($"CREATE TRIGGER injected_fault BEFORE {operation} ON {table} WHEN {when} BEGIN SELECT RAISE(ABORT, 'injected fault'); END");
        }
    }

    private static void RemoveFault(TestServer server, string table) =>
        server.ExecuteSql(server.Store.Database.Kind == DatabaseKind.Postgres ? $"DROP TRIGGER injected_fault ON {table}" : "DROP TRIGGER injected_fault");

    private static Inventory OffPattern() =>
        TransactionTests.Factory() with { Applications = new Dictionary<string, string>(TransactionTests.Factory().Applications) { ["unknown-app"] = "1.0.0" } };

    private static async Task<IReadOnlyList<UnitEventRow>> Events(TestServer server, string mac, string kind) =>
        (await server.Store.History.ListUnitEventsAsync(mac)).Where(e => e.Kind == kind).ToList();

    /// <summary>
    /// Sends <paramref name="send"/> with <paramref name="table"/>'s <paramref name="operation"/> failing where <paramref name="when"/>
    /// holds: refused, every table as before; then without the fault: answered 200, whose body is returned.
    /// </summary>
    private static async Task<string> AssertAllOrNothing(TestServer server, string operation, string table, string when, Func<Task<HttpResponseMessage>> send)
    {
        InjectFault(server, operation, table, when);
        var before = HostileInputTests.Snapshot(server);
        using (var failed = await send())
        {
            Assert.That(failed.IsSuccessStatusCode, Is.False, $"the write failed: {(int)failed.StatusCode} {await failed.Content.ReadAsStringAsync()}");
        }
        Assert.That(HostileInputTests.Snapshot(server), Is.EqualTo(before), "nothing of the request without its last write");
        RemoveFault(server, table);
        using var again = await send();
        var body = await again.Content.ReadAsStringAsync();
        Assert.That(again.IsSuccessStatusCode, Is.True, $"without the fault the same request succeeds: {(int)again.StatusCode} {body}");
        return body;
    }

    [TestCase("sqlite")]
    [TestCase("postgres")]
    public async Task A_version_check_off_every_pattern_whose_history_entry_fails_records_nothing(string kind)
    {
        TestServer.DatabaseKind.Value = kind;
        await using var server = await TestServer.StartAsync();
        var mac = (await server.AddUnitsAsync(1))[0].Mac;
        using var http = await TransactionTests.UnitHttp(server, mac);
        var request = new VersionCheckRequest(OffPattern(), new UnitLoad(0, 0), false, null);
        await AssertAllOrNothing(server, "INSERT", "unit_events", $"NEW.kind = '{UnitEventKinds.Check}'",
            () => http.PostAsJsonAsync(Routes.VersionCheck, request, ProtocolJson.Default.VersionCheckRequest));

        var unit = (await server.Store.Units.GetUnitAsync(mac))!;
        Assert.That(unit.State, Is.EqualTo(UnitStates.OffPattern));
        Assert.That(unit.LastError, Is.EqualTo("inventory matches no verified install pattern"));
        Assert.That(unit.Inventory, Does.Contain("unknown-app"));
        Assert.That((await Events(server, mac, UnitEventKinds.Check)).Select(e => (e.Detail, e.Failed)),
            Is.EqualTo(new[] { ("periodic: software matches no verified install pattern", 1L) }), "one failed history entry, written with the rest");
    }

    [TestCase("sqlite")]
    [TestCase("postgres")]
    public async Task A_version_check_whose_history_entry_fails_records_no_inventory_and_is_recorded_whole_the_next_time(string kind)
    {
        TestServer.DatabaseKind.Value = kind;
        await using var server = await TestServer.StartAsync();
        var mac = (await server.AddUnitsAsync(1))[0].Mac;
        using var http = await TransactionTests.UnitHttp(server, mac);
        Assert.That((await server.Store.Units.GetUnitAsync(mac))!.Inventory, Is.Null, "the unit has reported nothing yet");
        var request = new VersionCheckRequest(TransactionTests.Factory(), new UnitLoad(0, 0), false, null);
        await AssertAllOrNothing(server, "INSERT", "unit_events", $"NEW.kind = '{UnitEventKinds.Check}'",
            () => http.PostAsJsonAsync(Routes.VersionCheck, request, ProtocolJson.Default.VersionCheckRequest));

        Assert.That((await server.Store.Units.GetUnitAsync(mac))!.Inventory, Is.Not.Null, "the inventory, with its history entry");
        // the periodic check that was rolled back is not taken for the unit's newest history entry
        Assert.That(await Events(server, mac, UnitEventKinds.Check), Has.Count.EqualTo(1), "the check's history entry");
    }

    [TestCase("sqlite")]
    [TestCase("postgres")]
    public async Task A_ready_report_with_a_boot_problem_whose_ready_entry_fails_records_neither(string kind)
    {
        TestServer.DatabaseKind.Value = kind;
        await using var server = await TestServer.StartAsync();
        var mac = (await server.AddUnitsAsync(1))[0].Mac;
        using var http = await TransactionTests.UnitHttp(server, mac);
        const string problem = "slot b failed dm-verity verification: booted slot a";
        var report = new ReadyReport(TransactionTests.Factory(), null, "203.0.113.7", BootProblem: problem);
        // the boot problem's entry is written first; the ready entry after it fails
        await AssertAllOrNothing(server, "INSERT", "unit_events", $"NEW.kind = '{UnitEventKinds.Ready}' AND NEW.failed = 0",
            () => http.PostAsJsonAsync(Routes.Ready, report, ProtocolJson.Default.ReadyReport));

        Assert.That((await server.Store.Units.GetUnitAsync(mac))!.LastError, Is.EqualTo(problem));
        Assert.That((await Events(server, mac, UnitEventKinds.Ready)).Select(e => e.Failed).Order(), Is.EqualTo(new[] { 0L, 1L }),
            "the boot problem's failed entry and the ready entry");
    }

    [TestCase("sqlite")]
    [TestCase("postgres")]
    public async Task A_ready_report_whose_steady_check_nonce_is_not_stored_records_nothing_and_the_nonce_of_the_next_one_works(string kind)
    {
        TestServer.DatabaseKind.Value = kind;
        var time = new SteadyCheckFlowTests.OffsetTime();
        TestServer.Time.Value = time;
        try
        {
            await using var server = await TestServer.StartAsync();
            var mac = (await server.AddUnitsAsync(1))[0].Mac;
            // held on the factory pattern: no update program to offer, so nothing keeps the unit from being steady
            await server.Store.Units.SetTargetPatternAsync(mac, DemoCatalogue.Pattern1);
            using var http = await TransactionTests.UnitHttp(server, mac);
            var vpn = new UnitVpnReport(Convert.ToBase64String(new byte[32]), 51820);
            // the unit applied its newest configuration: the report makes it final
            var revision = (int?)(await server.Store.ServiceConfigs.ListUnitConfigsAsync(mac)).MaxBy(c => c.Revision)?.Revision;
            if (revision is { } applied)
            {
                using var ack = await http.PostAsJsonAsync(Routes.ServiceConfigAck, new ServiceConfigAck(applied, true, null), ProtocolJson.Default.ServiceConfigAck);
                Assert.That(ack.IsSuccessStatusCode, Is.True, await ack.Content.ReadAsStringAsync());
            }
            var report = new ReadyReport(TransactionTests.Factory(), revision, "203.0.113.7", vpn);
            // the nonce is the ready transaction's last write
            var body = await AssertAllOrNothing(server, "INSERT", "challenges", $"NEW.purpose = '{ProofPurpose.SteadyCheck}'",
                () => http.PostAsJsonAsync(Routes.Ready, report, ProtocolJson.Default.ReadyReport));

            var readyAck = System.Text.Json.JsonSerializer.Deserialize(body, ProtocolJson.Default.ReadyAck)!;
            Assert.That(readyAck.NextCheck, Is.Not.Null, "the answer hands out a nonce");
            var unit = (await server.Store.Units.GetUnitAsync(mac))!;
            Assert.That((unit.State, unit.VpnPublicKey), Is.EqualTo((UnitStates.Ready, vpn.PublicKey)), "the report recorded whole");
            Assert.That(await Events(server, mac, UnitEventKinds.Ready), Has.Count.EqualTo(1), "one ready entry: the rolled back report left none");
            var reportedAt = unit.VpnReportedAt;

            // an hour later the unit checks in with the nonce, in one request: it was stored, and the VPN report is refreshed
            time.Offset = TimeSpan.FromHours(1);
            var proof = UnitCredentials.ComputeProof(UnitCredentials.DeriveUnitSecret(server.UnitKey, mac), ProofPurpose.SteadyCheck, mac, readyAck.NextCheck!.Id, readyAck.NextCheck.Nonce);
            using var steady = await server.PinnedHttp().PostAsJsonAsync(Routes.SteadyCheck,
                new SteadyCheckRequest(mac, readyAck.NextCheck.Id, proof, System.Text.Json.JsonSerializer.Deserialize(unit.Inventory!, ProtocolJson.Default.Inventory)!, (int)unit.SettingsRevision, revision, "203.0.113.7", vpn), ProtocolJson.Default.SteadyCheckRequest);
            Assert.That(steady.StatusCode, Is.EqualTo(HttpStatusCode.OK), await steady.Content.ReadAsStringAsync());
            var answer = (await steady.Content.ReadFromJsonAsync(ProtocolJson.Default.SteadyCheckResponse))!;
            Assert.That((answer.Steady, answer.Reason), Is.EqualTo((true, (string?)null)), "nothing changed");
            var after = (await server.Store.Units.GetUnitAsync(mac))!;
            Assert.That(DateTimeOffset.Parse(after.VpnReportedAt!, CultureInfo.InvariantCulture) - DateTimeOffset.Parse(reportedAt!, CultureInfo.InvariantCulture),
                Is.GreaterThanOrEqualTo(TimeSpan.FromHours(1)), "the steady check's VPN report is as fresh as a ready report's");
        }
        finally
        {
            TestServer.Time.Value = null;
        }
    }

    [TestCase("sqlite")]
    [TestCase("postgres")]
    public async Task A_rejected_medium_whose_last_error_fails_is_not_audited(string kind)
    {
        TestServer.DatabaseKind.Value = kind;
        await using var server = await TestServer.StartAsync();
        var mac = (await server.AddUnitsAsync(1))[0].Mac;
        using var http = await TransactionTests.UnitHttp(server, mac);
        var digest = new string('c', 64);
        // the audit entry is written first; the unit's last error after it fails
        await AssertAllOrNothing(server, "UPDATE", "units", "NEW.last_error LIKE 'install medium%'",
            () => http.PostAsJsonAsync(Routes.MediaCheck, new MediaCheckRequest(digest), ProtocolJson.Default.MediaCheckRequest));

        Assert.That((await server.Store.Units.GetUnitAsync(mac))!.LastError, Is.EqualTo($"install medium {digest[..12]}... is not genuine: rejected"));
        Assert.That((await server.Store.History.ListAuditForUnitAsync(mac)).Count(a => a.Action == "media.rejected" && a.Target == digest), Is.EqualTo(1));
    }

    private static Inventory Pattern3() => RolloutCatalogue.Pattern3Inventory();

    /// <summary>
    /// Pattern 3 and the way back to pattern 2 in the catalogue, the unit of <paramref name="http"/> checked in on pattern 3
    /// (offered nothing: no rollout yet), then rollout "back" of group "on-3" (the units on pattern 3) to pattern 2.
    /// </summary>
    private static async Task WayBackRolloutAsync(TestServer server, OperatorClient op, HttpClient http)
    {
        await RolloutCatalogue.AddPattern3Async(server, op);
        await RolloutCatalogue.AddWayBackAsync(server, op);
        var first = await CheckAsync(http, Pattern3());
        Assert.That((first.CurrentPattern, first.Update), Is.EqualTo(("pattern-3", (UpdateOffer?)null)), "without a rollout the way back is offered to nobody");
        await op.CallAsync<GroupView>(HttpMethod.Post, FleetApi.GroupsRoute, new NewGroup("on-3", null, new GroupFilter(Pattern: "pattern-3")), CancellationToken.None);
        await op.CallAsync<RolloutView>(HttpMethod.Post, RolloutsApi.Route,
            new NewRollout("back", "on-3", "pattern-3", DemoCatalogue.Pattern2, [new(Percent: 100)]), CancellationToken.None);
    }

    private static async Task<VersionCheckResponse> CheckAsync(HttpClient http, Inventory inventory)
    {
        using var response = await http.PostAsJsonAsync(Routes.VersionCheck, new VersionCheckRequest(inventory, new UnitLoad(0, 0), false, null), ProtocolJson.Default.VersionCheckRequest);
        Assert.That(response.IsSuccessStatusCode, Is.True, $"{(int)response.StatusCode} {await response.Content.ReadAsStringAsync()}");
        return (await response.Content.ReadFromJsonAsync(ProtocolJson.Default.VersionCheckResponse))!;
    }

    /// <summary>
    /// A rollout back offers a unit without a target the way back: the rollout's record of the offer, the pinned target
    /// with its audit entry, the unit's state and its history entry are one transaction. The pin's write fails: nothing of
    /// the check is recorded (before, the offer was recorded in a transaction of its own and stayed, while the unit was
    /// told nothing); the same check then records all of it.
    /// </summary>
    [TestCase("sqlite")]
    [TestCase("postgres")]
    public async Task A_way_back_whose_pin_fails_records_no_offer_and_is_recorded_whole_the_next_time(string kind)
    {
        TestServer.DatabaseKind.Value = kind;
        TestServer.Configure.Value = o => o.RolloutTickSeconds = 3600; // no engine pass between the snapshots
        try
        {
            await using var server = await TestServer.StartAsync();
            using var op = server.Operator();
            var mac = (await server.AddUnitsAsync(1))[0].Mac;
            using var http = await TransactionTests.UnitHttp(server, mac);
            await WayBackRolloutAsync(server, op, http);

            var request = new VersionCheckRequest(Pattern3(), new UnitLoad(0, 0), false, null);
            await AssertAllOrNothing(server, "UPDATE", "units", "NEW.target_pattern IS NOT NULL AND OLD.target_pattern IS NULL",
                () => http.PostAsJsonAsync(Routes.VersionCheck, request, ProtocolJson.Default.VersionCheckRequest));

            var unit = (await server.Store.Units.GetUnitAsync(mac))!;
            Assert.That((unit.TargetPattern, unit.State), Is.EqualTo((DemoCatalogue.Pattern2, UnitStates.Updating)), "pinned and updating, with the offer");
            var member = (await server.Store.Rollouts.RolloutMembersAsync((await server.Store.Rollouts.GetRolloutAsync("back"))!)).Single();
            Assert.That((member.Mac, member.Status), Is.EqualTo((mac, MemberStatus.Downloading)), "the rollout recorded the offer");
            Assert.That((await server.Store.History.ListAuditForUnitAsync(mac)).Count(a => a.Action == "unit.target-pattern" && a.Actor == "rollout:back"), Is.EqualTo(1), "one pin, audited once");
            Assert.That((await Events(server, mac, UnitEventKinds.Check)).Select(e => e.Detail),
                Is.EquivalentTo(new[] { "periodic on pattern-3: up to date", "periodic on pattern-3: offered p3-to-p2" }), "the first check and the offer, each recorded once");
        }
        finally
        {
            TestServer.Configure.Value = null;
        }
    }

    /// <summary>
    /// A rollout back is paused or aborted after a version check passed its gate and before the check's transaction (held
    /// there by the store's seam): the offer is withheld in the transaction and nothing of it is written. The unit is told
    /// the update is deferred with the rollout's state; the check is recorded once, as deferred; the rollout records no
    /// offer (previous_pattern stays null, so an abort returns nobody), the unit is not pinned and nothing is audited for it.
    /// </summary>
    [TestCase("sqlite", "pause", RolloutStates.Paused)]
    [TestCase("sqlite", "abort", RolloutStates.Aborted)]
    [TestCase("postgres", "pause", RolloutStates.Paused)]
    [TestCase("postgres", "abort", RolloutStates.Aborted)]
    public async Task A_way_back_whose_rollout_stops_before_the_check_records_it_is_deferred_and_records_no_offer(string kind, string action, string stopped)
    {
        TestServer.DatabaseKind.Value = kind;
        TestServer.Configure.Value = o => o.RolloutTickSeconds = 3600; // no engine pass meanwhile
        try
        {
            await using var server = await TestServer.StartAsync();
            using var op = server.Operator();
            var mac = (await server.AddUnitsAsync(1))[0].Mac;
            using var http = await TransactionTests.UnitHttp(server, mac);
            await WayBackRolloutAsync(server, op, http);
            var checksBefore = (await Events(server, mac, UnitEventKinds.Check)).Count;
            var auditBefore = (await server.Store.History.ListAuditForUnitAsync(mac)).Count;

            Task<VersionCheckResponse> check;
            using (var hold = StoreSeam.HoldAt(server.Store, nameof(UnitStore.RecordCheckAsync)))
            {
                check = CheckAsync(http, Pattern3());
                await hold.Reached.WaitAsync(TimeSpan.FromSeconds(60));
                var view = await op.CallAsync<RolloutView>(HttpMethod.Post, $"{RolloutsApi.Route}/back/{action}", action == "abort" ? new AbortRequest() : null, CancellationToken.None);
                Assert.That(view.State, Is.EqualTo(stopped));
                hold.Release();
            }
            var answer = await check;
            Assert.That(answer.Update, Is.Null, "the way back is not offered");
            Assert.That(answer.Deferred, Is.EqualTo($"rollout back is {stopped}"));

            var checks = await Events(server, mac, UnitEventKinds.Check);
            Assert.That(checks.Count - checksBefore, Is.EqualTo(1), "the check is recorded once");
            Assert.That(checks.Count(e => e.Detail == $"periodic on pattern-3: update p3-to-p2 deferred: rollout back is {stopped}"), Is.EqualTo(1), "as deferred");
            Assert.That(checks.Select(e => e.Detail), Has.None.Contain("offered"));
            using (var c = server.Store.Database.Open())
            using (var q = c.CreateCommand())
            {
                q.CommandText = "SELECT COUNT(*) FROM rollout_units WHERE rollout = 'back' AND previous_pattern IS NOT NULL";
                Assert.That(Convert.ToInt64(q.ExecuteScalar(), System.Globalization.CultureInfo.InvariantCulture), Is.Zero, "the rollout recorded no offer");
            }
            var unit = (await server.Store.Units.GetUnitAsync(mac))!;
            Assert.That((unit.TargetPattern, unit.State), Is.EqualTo(((string?)null, UnitStates.Configuring)), "not pinned, not updating");
            Assert.That((await server.Store.History.ListAuditForUnitAsync(mac)).Count, Is.EqualTo(auditBefore), "nothing audited for the unit");
        }
        finally
        {
            TestServer.Configure.Value = null;
        }
    }

    /// <summary>
    /// The program a version check would offer is deleted after the check read the catalogue and before its transaction
    /// (held there by the store's seam): the check, re-reading the program in its transaction, offers nothing and records
    /// the update as deferred (before, it offered the deleted program and the unit's download got 404). Once the program
    /// is back, the next check offers it, and a deletion then is refused: the unit is being updated from its pattern.
    /// </summary>
    [TestCase("sqlite")]
    [TestCase("postgres")]
    public async Task A_program_deleted_after_the_catalogue_read_is_not_offered(string kind)
    {
        TestServer.DatabaseKind.Value = kind;
        await using var server = await TestServer.StartAsync();
        using var op = server.Operator();
        var mac = (await server.AddUnitsAsync(1))[0].Mac;
        using var http = await TransactionTests.UnitHttp(server, mac);
        var program = (await server.Store.Catalogue.GetUpdateProgramAsync(DemoCatalogue.UpdateId))!;
        var checksBefore = (await Events(server, mac, UnitEventKinds.Check)).Count;

        Task<VersionCheckResponse> check;
        using (var hold = StoreSeam.HoldAt(server.Store, nameof(UnitStore.RecordCheckAsync)))
        {
            check = CheckAsync(http, TransactionTests.Factory());
            await hold.Reached.WaitAsync(TimeSpan.FromSeconds(60));
            await op.SendAsync(HttpMethod.Delete, $"/api/v1/update-programs/{DemoCatalogue.UpdateId}", null, CancellationToken.None);
            hold.Release();
        }
        var answer = await check;
        Assert.That(answer.Update, Is.Null, "the deleted program is not offered");
        Assert.That(answer.Deferred, Does.Contain($"update program {DemoCatalogue.UpdateId} was removed"));
        var unit = (await server.Store.Units.GetUnitAsync(mac))!;
        Assert.That((unit.Pattern, unit.State), Is.EqualTo((DemoCatalogue.Pattern1, UnitStates.Configuring)), "recorded as a deferred check, not as updating");
        var checks = await Events(server, mac, UnitEventKinds.Check);
        Assert.That(checks.Count - checksBefore, Is.EqualTo(1), "the check is recorded once");
        Assert.That(checks.Count(e => e.Detail == $"periodic on {DemoCatalogue.Pattern1}: update {DemoCatalogue.UpdateId} deferred: {answer.Deferred}"), Is.EqualTo(1), "as deferred");
        Assert.That(checks.Select(e => e.Detail), Has.All.Not.Contain("offered"));

        // the program back (same artifact): offered, and then it cannot be deleted while the unit is updated by it
        await server.Store.Catalogue.UpsertUpdateProgramAsync(program);
        Assert.That((await CheckAsync(http, TransactionTests.Factory())).Update?.UpdateId, Is.EqualTo(DemoCatalogue.UpdateId));
        var refused = Assert.ThrowsAsync<OperatorApiException>(() => op.SendAsync(HttpMethod.Delete, $"/api/v1/update-programs/{DemoCatalogue.UpdateId}", null, CancellationToken.None));
        Assert.That(refused!.Message, Does.Contain($"needed by unit {mac}"));
        Assert.That(await server.Store.Catalogue.GetUpdateProgramAsync(DemoCatalogue.UpdateId), Is.Not.Null);
    }

    /// <summary>
    /// PostgreSQL: a version check re-reads the program it offers under the catalogue lock taken shared, and holds it to
    /// its commit. The test's own transaction locks the unit's row, so the check (lock taken, program read) waits for it
    /// in its first write; a deletion of the program started then waits for the catalogue lock (an ungranted advisory
    /// lock), and once the unit's row is released and the check committed, it sees the unit updating and is refused.
    /// Without the shared lock the deletion would read the unit as not yet updating and delete a program being offered.
    /// </summary>
    [Test]
    public async Task A_program_deletion_waits_for_a_version_check_offering_it_and_is_then_refused()
    {
        TestServer.DatabaseKind.Value = "postgres";
        await using var server = await TestServer.StartAsync();
        using var op = server.Operator();
        var mac = (await server.AddUnitsAsync(1))[0].Mac;
        using var http = await TransactionTests.UnitHttp(server, mac);

        Task<VersionCheckResponse> check;
        Task<string> deletion;
        await using (var holder = await server.Store.Database.OpenAsync(CancellationToken.None))
        await using (var hold = await holder.BeginTransactionAsync())
        {
            await using (var lockRow = holder.CreateCommand())
            {
                lockRow.Transaction = hold;
                lockRow.CommandText = "SELECT mac FROM units WHERE mac = @mac FOR UPDATE";
                var parameter = lockRow.CreateParameter();
                parameter.ParameterName = "mac";
                parameter.Value = mac;
                lockRow.Parameters.Add(parameter);
                await lockRow.ExecuteNonQueryAsync();
            }
            check = CheckAsync(http, TransactionTests.Factory());
            Assert.That(await WaitersAsync(server, "%UPDATE units SET%", w => w > 0, check), Is.GreaterThan(0), "the check waits for the unit's row, past its re-read of the program");
            deletion = op.SendAsync(HttpMethod.Delete, $"/api/v1/update-programs/{DemoCatalogue.UpdateId}", null, CancellationToken.None);
            Assert.That(await WaitersAsync(server, "%pg_advisory_xact_lock(%", w => w > 0, deletion), Is.GreaterThan(0), "the deletion waits for the catalogue lock the check holds shared");
            Assert.That(check.IsCompleted, Is.False, "the check still waits for the unit's row");
            await hold.RollbackAsync();
        }
        var answer = await check;
        Assert.That(answer.Update?.UpdateId, Is.EqualTo(DemoCatalogue.UpdateId), "offered");
        Assert.That((await server.Store.Units.GetUnitAsync(mac))!.State, Is.EqualTo(UnitStates.Updating));
        var refused = Assert.ThrowsAsync<OperatorApiException>(async () => await deletion);
        Assert.That(refused!.Status, Is.EqualTo(409));
        Assert.That(refused.Message, Does.Contain($"needed by unit {mac}"));
        Assert.That(await server.Store.Catalogue.GetUpdateProgramAsync(DemoCatalogue.UpdateId), Is.Not.Null, "the program offered stays");
    }

    /// <summary>
    /// PostgreSQL: the unit hangs up while its request's last write waits for a lock the test holds (on SQLite a write
    /// waits only before its transaction begins). The request's cancellation reaches the database and rolls back what
    /// it wrote before; nothing of it appears once the lock is released.
    /// </summary>
    [TestCase("version-check", "unit_events", "%INSERT INTO unit_events%")]
    [TestCase("media-check", "units", "%last_error%")]
    public async Task A_unit_hanging_up_while_its_last_write_waits_leaves_nothing_of_the_request(string request, string lockedTable, string statement)
    {
        TestServer.DatabaseKind.Value = "postgres";
        await using var server = await TestServer.StartAsync();
        var mac = (await server.AddUnitsAsync(1))[0].Mac;
        using var http = await TransactionTests.UnitHttp(server, mac);
        var before = HostileInputTests.Snapshot(server);

        await using var holder = await server.Store.Database.OpenAsync(CancellationToken.None);
        await using var hold = await holder.BeginTransactionAsync();
        await using (var lockTable = holder.CreateCommand())
        {
            lockTable.Transaction = hold;
            // the request's reads go on; its insert or update of this table waits
            lockTable.CommandText = $"LOCK TABLE {lockedTable} IN EXCLUSIVE MODE";
            await lockTable.ExecuteNonQueryAsync();
        }
        using var hangUp = new CancellationTokenSource();
        var sent = request == "version-check"
            ? http.PostAsJsonAsync(Routes.VersionCheck, new VersionCheckRequest(OffPattern(), new UnitLoad(0, 0), true, null), ProtocolJson.Default.VersionCheckRequest, hangUp.Token)
            : http.PostAsJsonAsync(Routes.MediaCheck, new MediaCheckRequest(new string('d', 64)), ProtocolJson.Default.MediaCheckRequest, hangUp.Token);
        Assert.That(await WaitersAsync(server, statement, w => w > 0, sent), Is.GreaterThan(0), "the request's write waits for the lock");

        hangUp.Cancel();
        Assert.CatchAsync<OperationCanceledException>(async () => await sent, "the unit hung up");
        // the server sees the hang-up, the waiting statement is cancelled and the request's transaction ends
        Assert.That(await WaitersAsync(server, statement, w => w == 0, null), Is.Zero, "the request stopped waiting once the unit hung up");
        await hold.RollbackAsync();

        Assert.That(HostileInputTests.Snapshot(server), Is.EqualTo(before), "nothing of the request the unit hung up on");
        var unit = (await server.Store.Units.GetUnitAsync(mac))!;
        Assert.That((unit.LastError, unit.Inventory), Is.EqualTo(((string?)null, (string?)null)), "no error and no inventory recorded");
    }

    /// <summary>
    /// How many backends of the server's database wait for a lock running <paramref name="statement"/> (a LIKE pattern: the
    /// request's own write, not the server's background work on the same table), polled until <paramref name="done"/> (at most 60 s).
    /// </summary>
    private static async Task<long> WaitersAsync(TestServer server, string statement, Func<long, bool> done, Task? request)
    {
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(60);
        while (true)
        {
            await using (var c = await server.Store.Database.OpenAsync(CancellationToken.None))
            await using (var q = c.CreateCommand())
            {
                q.CommandText = "SELECT COUNT(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock' AND query ILIKE @statement";
                var parameter = q.CreateParameter();
                parameter.ParameterName = "statement";
                parameter.Value = statement;
                q.Parameters.Add(parameter);
                var waiting = Convert.ToInt64(await q.ExecuteScalarAsync(), System.Globalization.CultureInfo.InvariantCulture);
                if (done(waiting) || DateTime.UtcNow > deadline) { return waiting; }
            }
            if (request is { IsCompleted: true }) { Assert.Fail($"the request ended before it waited: {request.Status} {request.Exception?.InnerException?.Message}"); }
            await Task.Delay(20);
        }
    }
}
