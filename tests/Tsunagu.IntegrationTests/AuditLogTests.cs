using System.Net;
using System.Text;
using System.Text.Json;
using Microsoft.Data.Sqlite;
using Npgsql;
using Tsunagu.Demo;
using Tsunagu.Server.Data;

namespace Tsunagu.IntegrationTests;

/// <summary>
/// The audit log's filters and keyset paging (server/Tsunagu.Server/Apis/AuditApi.cs, PageStore.cs,
/// migration M0015): every filter combination walks each matching entry exactly once, newest first, on SQLite and
/// PostgreSQL; each filter is read through its index; the operator API answers wrong filters 400 and links the next
/// page; entries written before the migration are found by unit.
/// </summary>
[NonParallelizable]
public class AuditLogTests
{
    private string _directory = "";

    [SetUp]
    public void SetUp()
    {
        TestServer.DatabaseKind.Value = "sqlite";
        _directory = Directory.CreateTempSubdirectory("tsunagu-audit-").FullName;
    }

    [TearDown]
    public void TearDown()
    {
        SqliteConnection.ClearAllPools();
        NpgsqlConnection.ClearAllPools();
        Directory.Delete(_directory, recursive: true);
    }

    /// <summary>A clock that moves only when told to.</summary>
    private sealed class Clock(DateTimeOffset start) : TimeProvider
    {
        public DateTimeOffset Now { get; set; } = start;
        public override DateTimeOffset GetUtcNow() => Now;
    }

    private static readonly DateTimeOffset Start = new(2026, 3, 1, 0, 0, 0, TimeSpan.Zero);

    private (TsunaguStore Store, Database Database) Store(string kind, TimeProvider time, long? upTo = null)
    {
        var database = Database.Parse(kind == "postgres" ? PostgresServer.Shared.CreateDatabase() : "tsunagu.db", _directory);
        database.Migrate(upTo);
        return (new TsunaguStore(database, time), database);
    }

    private static string Mac(int i) => $"02:00:5e:00:{(i >> 8) & 0xff:x2}:{i & 0xff:x2}";

    private static readonly string[] Actors = ["alice", "bob", "system"];
    private static readonly string[] Actions = ["unit.check", "pattern.verify", "units.check", "update.succeeded"];

    /// <summary>
    /// Entries a minute apart: operators' entries about one unit or a list of units, units' own entries (actor: the MAC),
    /// and entries about no unit; a target that only looks like a MAC in upper case, and a serial of 12 hex digits.
    /// </summary>
    private static async Task Seed(TsunaguStore store, Clock clock, int count)
    {
        for (var i = 0; i < count; i++)
        {
            clock.Now = Start.AddMinutes(i);
            var action = Actions[i % Actions.Length];
            var (actor, target) = action switch
            {
                "units.check" => (Actors[i % 2], string.Join(",", Mac(i % 7), Mac((i + 1) % 7), Mac((i + 3) % 7))),
                "update.succeeded" => (Mac(i % 7), $"update-{i}"),
                "unit.check" when i % 5 == 0 => (Actors[i % 3], "02005e000001"),
                _ => (Actors[i % 3], i % 2 == 0 ? Mac(i % 7) : $"pattern-{i % 4}"),
            };
            await store.AuditAsync(actor, action, target, $"entry {i}");
        }
    }

    private static bool Names(AuditRow a, string mac) => a.Actor == mac || (a.Target ?? "").Split(',').Contains(mac);

    private static async Task<List<AuditRow>> WalkAsync(TsunaguStore store, AuditQuery query)
    {
        var all = new List<AuditRow>();
        for (var page = await store.Pages.QueryAuditPageAsync(query); ; page = await store.Pages.QueryAuditPageAsync(query with { Before = page.Before }))
        {
            Assert.That(page.Rows, Has.Count.LessThanOrEqualTo(query.Limit));
            all.AddRange(page.Rows);
            if (page.Before is null) { break; }
            Assert.That(page.Rows, Has.Count.EqualTo(query.Limit), "only the last page is short");
        }
        return all;
    }

    [TestCase("sqlite")]
    [TestCase("postgres")]
    public async Task Each_filter_walks_every_matching_entry_once_newest_first(string kind)
    {
        var clock = new Clock(Start);
        var (store, _) = Store(kind, clock);
        await Seed(store, clock, 400);
        var everything = await store.ListAuditAsync(10_000);
        Assert.That(everything, Has.Count.EqualTo(400));
        var from = Start.AddMinutes(100);
        var to = Start.AddMinutes(250);

        async Task CheckAsync(AuditQuery query, Func<AuditRow, bool> expected, string what)
        {
            var walked = await WalkAsync(store, query with { Limit = 17 });
            var want = everything.Where(expected).Select(a => a.Id).ToList(); // ListAudit is newest first
            Assert.That(want, Is.Not.Empty, $"{what}: the seed has entries that match");
            Assert.That(walked.Select(a => a.Id), Is.EqualTo(want), what);
        }

        await CheckAsync(new AuditQuery(), _ => true, "no filter");
        await CheckAsync(new AuditQuery(Actor: "alice"), a => a.Actor == "alice", "actor");
        await CheckAsync(new AuditQuery(Action: "pattern.verify"), a => a.Action == "pattern.verify", "action");
        await CheckAsync(new AuditQuery(Target: "pattern-1"), a => a.Target == "pattern-1", "target");
        await CheckAsync(new AuditQuery(Unit: Mac(1)), a => Names(a, Mac(1)), "unit: as actor, target and in a list");
        await CheckAsync(new AuditQuery(From: from, To: to), a => string.CompareOrdinal(a.At, TsunaguStore.Timestamp(from)) >= 0 && string.CompareOrdinal(a.At, TsunaguStore.Timestamp(to)) < 0, "time range");
        await CheckAsync(new AuditQuery(Unit: Mac(3), Action: "units.check", From: from), a => Names(a, Mac(3)) && a.Action == "units.check" && DateTimeOffset.Parse(a.At) >= from, "unit, action and from");
        await CheckAsync(new AuditQuery(Actor: "bob", To: to), a => a.Actor == "bob" && DateTimeOffset.Parse(a.At) < to, "actor and to");
        Assert.That((await store.Pages.QueryAuditPageAsync(new AuditQuery(Unit: "02:00:5e:00:00:63"))).Rows, Is.Empty, "a unit no entry names");
        Assert.That((await WalkAsync(store, new AuditQuery(Unit: Mac(1), Limit: 5))).Where(a => a.Target == "02005e000001"), Is.Empty,
            "a 12-hex-digit serial is not read as a unit");
    }

    [TestCase("sqlite")]
    [TestCase("postgres")]
    public async Task Entries_written_before_the_indexes_are_found_by_unit(string kind)
    {
        var clock = new Clock(Start);
        var (_, database) = Store(kind, clock, upTo: 12);
        using (var c = database.Open())
        {
            // the entries as the server wrote them before the migration: the audit table alone
            foreach (var (i, actor, target) in new[] { (0, "alice", Mac(1)), (1, Mac(2), "update-1"), (2, "bob", $"{Mac(1)},{Mac(3)}"), (3, "bob", "02005e000001"), (4, "system", null) })
            {
                using var insert = c.CreateCommand();
                insert.CommandText = "INSERT INTO audit (at, actor, action, target, detail) VALUES (@at, @actor, 'x.y', @target, NULL)";
                foreach (var (name, value) in new (string, object?)[] { ("@at", TsunaguStore.Timestamp(Start.AddMinutes(i))), ("@actor", actor), ("@target", target) })
                {
                    var p = insert.CreateParameter();
                    p.ParameterName = name;
                    p.Value = value ?? DBNull.Value;
                    insert.Parameters.Add(p);
                }
                insert.ExecuteNonQuery();
            }
        }
        database.Migrate();
        var store = new TsunaguStore(database, clock);
        var everything = await store.ListAuditAsync(1_000);
        Assert.That(everything, Has.Count.EqualTo(5));
        foreach (var (mac, count) in new[] { (Mac(1), 2), (Mac(2), 1), (Mac(3), 1), (Mac(4), 0) })
        {
            var found = await WalkAsync(store, new AuditQuery(Unit: mac, Limit: 1));
            Assert.That(found, Has.Count.EqualTo(count), mac);
            Assert.That(found.Select(a => a.Id), Is.EqualTo(everything.Where(a => Names(a, mac)).Select(a => a.Id)), mac);
        }
    }

    [TestCase("sqlite")]
    [TestCase("postgres")]
    public async Task Entries_listing_units_with_spaces_indexed_before_M0018_are_found_by_each_unit(string kind)
    {
        var clock = new Clock(Start);
        var (_, database) = Store(kind, clock, upTo: 15);
        using (var c = database.Open())
        {
            void Run(string sql)
            {
                using var command = c.CreateCommand();
                command.CommandText = sql;
                command.ExecuteNonQuery();
            }
            // as the server wrote them before: the entries, and audit_units with the first unit of "a, b" only
            Run($"INSERT INTO audit (at, actor, action, target, detail) VALUES ('{TsunaguStore.Timestamp(Start)}', 'bob', 'units.check', '{Mac(1)}, {Mac(3)}', NULL)");
            Run($"INSERT INTO audit (at, actor, action, target, detail) VALUES ('{TsunaguStore.Timestamp(Start.AddMinutes(1))}', 'bob', 'units.check', '{Mac(3)},{Mac(4)}', NULL)");
            Run($"INSERT INTO audit_units (mac, audit_id) SELECT '{Mac(1)}', id FROM audit WHERE target LIKE '%, %'");
            Run($"INSERT INTO audit_units (mac, audit_id) SELECT '{Mac(3)}', id FROM audit WHERE target NOT LIKE '%, %'");
            Run($"INSERT INTO audit_units (mac, audit_id) SELECT '{Mac(4)}', id FROM audit WHERE target NOT LIKE '%, %'");
        }
        database.Migrate();
        var store = new TsunaguStore(database, clock);
        var all = (await store.ListAuditAsync(10)).Select(a => a.Id).ToList();
        var (first, second) = (all[1], all[0]);
        foreach (var (mac, ids) in new[] { (Mac(1), new[] { first }), (Mac(3), [second, first]), (Mac(4), [second]) })
        {
            Assert.That((await WalkAsync(store, new AuditQuery(Unit: mac, Limit: 1))).Select(a => a.Id), Is.EqualTo(ids), mac);
            Assert.That((await store.History.ListAuditForUnitAsync(mac)).Select(a => a.Id), Is.EqualTo(ids), mac);
        }
    }

    private static readonly (string What, AuditQuery Query, string Index)[] Plans =
    [
        ("actor", new AuditQuery(Actor: "erin", Before: 9_000), "ix_audit_actor"),
        ("action", new AuditQuery(Action: "media.register"), "ix_audit_action"),
        ("unit", new AuditQuery(Unit: Mac(200), Before: 9_000), "audit_units"),
        ("time range", new AuditQuery(From: Start.AddMinutes(100), To: Start.AddMinutes(160)), "ix_audit_at"),
    ];

    /// <summary>
    /// The plan of each filtered page reads the filter's index, never every entry: on SQLite no full scan of the log
    /// (EXPLAIN QUERY PLAN), on PostgreSQL (statistics taken, 20,000 entries) the filter's index and no sequential scan.
    /// The filters are selective (a few entries among thousands), where reading the whole log would cost most.
    /// </summary>
    [Test]
    public async Task Each_filter_is_read_through_its_index_on_sqlite()
    {
        var clock = new Clock(Start);
        var (store, database) = Store("sqlite", clock);
        await Seed(store, clock, 2_000);
        await Rare(store);
        using var c = database.Open();
        foreach (var (what, query, index) in Plans)
        {
            using var explain = c.CreateCommand();
            explain.CommandText = "EXPLAIN QUERY PLAN " + PageStore.AuditPageSql(query);
            AddParameters(explain, query);
            var plan = new StringBuilder();
            using (var reader = explain.ExecuteReader()) { while (reader.Read()) { plan.AppendLine(reader.GetString(3)); } }
            Assert.That(plan.ToString(), Does.Contain(index).And.Not.Match(@"SCAN a\b(?! USING)"), $"{what}: {plan}");
        }
    }

    [Test]
    public async Task Each_filter_is_read_through_its_index_on_postgresql()
    {
        var clock = new Clock(Start);
        var (store, database) = Store("postgres", clock);
        await Seed(store, clock, 20_000);
        await Rare(store);
        using var c = database.Open();
        using (var analyze = c.CreateCommand())
        {
            analyze.CommandText = "ANALYZE audit; ANALYZE audit_units;";
            analyze.ExecuteNonQuery();
        }
        foreach (var (what, query, index) in Plans)
        {
            using var explain = c.CreateCommand();
            explain.CommandText = "EXPLAIN " + PageStore.AuditPageSql(query);
            AddParameters(explain, query);
            var plan = new StringBuilder();
            using (var reader = explain.ExecuteReader()) { while (reader.Read()) { plan.AppendLine(reader.GetString(0)); } }
            Assert.That(plan.ToString(), Does.Contain(index).And.Not.Contain("Seq Scan"), $"{what}: {plan}");
        }
    }

    private static async Task Rare(TsunaguStore store)
    {
        for (var i = 0; i < 3; i++) { await store.AuditAsync("erin", "media.register", Mac(200), null); }
    }

    private static void AddParameters(System.Data.Common.DbCommand command, AuditQuery query)
    {
        foreach (var property in PageStore.AuditPageArgs(query).GetType().GetProperties())
        {
            if (!command.CommandText.Contains("@" + property.Name, StringComparison.Ordinal)) { continue; }
            var p = command.CreateParameter();
            p.ParameterName = "@" + property.Name;
            p.Value = property.GetValue(PageStore.AuditPageArgs(query)) ?? DBNull.Value;
            command.Parameters.Add(p);
        }
    }

    [Test]
    public async Task The_api_pages_by_link_and_answers_wrong_filters_400()
    {
        await using var server = await TestServer.StartAsync();
        for (var i = 0; i < 23; i++) { await server.Store.AuditAsync("carol", i % 2 == 0 ? "unit.check" : "pattern.verify", i % 3 == 0 ? Mac(5) : $"t{i}", null); }
        using var http = server.OperatorHttp();

        var ids = new List<long>();
        var next = "/api/v1/audit?actor=carol&limit=4";
        var pages = 0;
        while (next is not null)
        {
            using var response = await http.GetAsync(next);
            Assert.That(response.StatusCode, Is.EqualTo(HttpStatusCode.OK), next);
            var rows = JsonSerializer.Deserialize<List<JsonElement>>(await response.Content.ReadAsStringAsync())!;
            Assert.That(rows, Has.Count.LessThanOrEqualTo(4));
            Assert.That(rows.Select(r => r.GetProperty("actor").GetString()), Is.All.EqualTo("carol"));
            ids.AddRange(rows.Select(r => r.GetProperty("id").GetInt64()));
            next = response.Headers.TryGetValues("Link", out var link)
                ? System.Text.RegularExpressions.Regex.Match(link.Single(), "^<([^>]+)>; rel=\"next\"$").Groups[1].Value
                : null;
            pages++;
        }
        Assert.That(pages, Is.EqualTo(6));
        Assert.That(ids, Is.EqualTo((await server.Store.ListAuditAsync(1_000, actor: "carol")).Select(a => a.Id)));

        var byUnit = JsonSerializer.Deserialize<List<JsonElement>>(await http.GetStringAsync($"/api/v1/audit?unit={Mac(5).ToUpperInvariant()}&action=unit.check"))!;
        Assert.That(byUnit.Select(r => (r.GetProperty("target").GetString(), r.GetProperty("action").GetString())),
            Is.EqualTo(Enumerable.Repeat((Mac(5), "unit.check"), 4)));

        foreach (var (query, field) in new[]
                 {
                     ("limit=0", "limit"), ("limit=10001", "limit"), ("limit=abc", "limit"), ("limit=-1", "limit"),
                     ("before=0", "before"), ("before=x", "before"), ("before=99999999999999999999", "before"),
                     ("unit=02:00:5e", "unit"), ("unit=%27%20OR%201%3D1", "unit"), ("action=a%20b", "action"), ("actor=a%0Ab", "actor"),
                     ("target=%1B%5B31m", "target"), ("from=yesterday", "from"), ("from=2026-02-30T00:00Z", "from"), ("to=2026-01-01", "to"),
                     ("from=2026-03-02T00:00Z&to=2026-03-01T00:00Z", "to"), ("from=2026-03-01T00:00Z&to=2026-03-01T00:00Z", "to"),
                     ("actor=" + new string('a', 257), "actor"),
                 })
        {
            using var response = await http.GetAsync("/api/v1/audit?" + query);
            Assert.That(response.StatusCode, Is.EqualTo(HttpStatusCode.BadRequest), query);
            Assert.That(response.Content.Headers.ContentType?.MediaType, Is.EqualTo("application/problem+json"), query);
            using var problem = JsonDocument.Parse(await response.Content.ReadAsStringAsync());
            Assert.That(problem.RootElement.GetProperty("field").GetString(), Is.EqualTo(field), query);
        }
        using var ok = await http.GetAsync("/api/v1/audit?from=2026-03-01T09:00%2B09:00&to=2099-01-01T00:00:00.1234567Z&unit=02-00-5E-00-00-05");
        Assert.That(ok.StatusCode, Is.EqualTo(HttpStatusCode.OK));
    }

    [Test]
    public async Task The_console_filters_by_unit_and_time_and_refuses_wrong_ones()
    {
        await using var server = await TestServer.StartAsync();
        await server.Store.AuditAsync("dave", "units.check", string.Join(",", Mac(8), Mac(9)), "list");
        await server.Store.AuditAsync("dave", "unit.check", Mac(10), "other");
        using var session = await RoleTests.ConsoleSession(server, DemoCatalogue.OperatorName, TestServer.Password);
        var page = await session.GetStringAsync($"/console/audit?unit={Mac(9)}&from=2000-01-01T00:00Z");
        Assert.That(page, Does.Contain(">list<").And.Not.Contain(">other<"));
        using var wrong = await session.GetAsync("/console/audit?unit=nope&to=soon");
        Assert.That(wrong.StatusCode, Is.EqualTo(HttpStatusCode.BadRequest));
        var body = await wrong.Content.ReadAsStringAsync();
        Assert.That(body, Does.Contain("Unit: a MAC address").And.Contain("To: a time").And.Not.Contain("id=\"audit-table\""));
    }
}
