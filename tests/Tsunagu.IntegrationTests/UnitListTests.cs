using System.Diagnostics;
using System.Net;
using System.Text;
using Microsoft.Data.Sqlite;
using Npgsql;
using Tsunagu.Demo;
using Tsunagu.Server.Data;

namespace Tsunagu.IntegrationTests;

/// <summary>
/// The console's unit list and audit log at fleet scale (server/Tsunagu.Server/Data/PageStore.cs,
/// Pages/Console/Units.cshtml): keyset paging on SQLite and PostgreSQL walks every matching unit exactly once in
/// order, whatever is registered meanwhile; wrong query parameters get 400 and list nothing; and the 100,000-unit
/// list is measured (docs/performance.md, "Console at fleet scale").
/// </summary>
[NonParallelizable]
public class UnitListTests
{
    private string _directory = "";

    [SetUp]
    public void SetUp()
    {
        TestServer.DatabaseKind.Value = "sqlite";
        _directory = Directory.CreateTempSubdirectory("tsunagu-unitlist-").FullName;
    }

    [TearDown]
    public void TearDown()
    {
        SqliteConnection.ClearAllPools();
        NpgsqlConnection.ClearAllPools();
        Directory.Delete(_directory, recursive: true);
    }

    private TsunaguStore Store(string kind)
    {
        var database = Database.Parse(kind == "postgres" ? PostgresServer.Shared.CreateDatabase() : "tsunagu.db", _directory);
        database.Migrate();
        return new TsunaguStore(database, TimeProvider.System);
    }

    private static string Mac(int i) => $"02:54:{(i >> 24) & 0xff:x2}:{(i >> 16) & 0xff:x2}:{(i >> 8) & 0xff:x2}:{i & 0xff:x2}";

    private static readonly string[] States = [UnitStates.Registered, UnitStates.Ready, UnitStates.Updating, UnitStates.OffPattern];

    /// <summary>A varied fleet: repeated sort keys (so the MAC tie-break matters), units on no pattern, without subscriber.</summary>
    private static List<UnitRow> Fleet(int count, int first = 0) => Enumerable.Range(first, count).Select(i => new UnitRow
    {
        Mac = Mac(i), Serial = $"sn{i % 97:d5}", HardwareVersion = "hw-1", IspMethod = "dhcp", State = States[i % States.Length],
        Pattern = i % 5 == 0 ? null : $"pattern-{i % 3}", Subscriber = i % 4 == 0 ? null : $"sub{i % 50:d3}",
        // domains in either case (a DNS name is matched without regard to case), some units without one
        Domain = i % 6 == 0 ? null : i % 7 == 0 ? $"D{i % 40:d2}.Example" : $"d{i % 40:d2}.example",
    }).ToList();

    private static async Task<List<UnitListRow>> WalkAsync(TsunaguStore store, UnitPageQuery query, Func<int, Task>? betweenPages = null)
    {
        var all = new List<UnitListRow>();
        var pages = 0;
        for (var page = await store.Pages.QueryUnitPageAsync(query); ; page = await store.Pages.QueryUnitPageAsync(query with { After = page.Next }))
        {
            Assert.That(page.Rows, Has.Count.LessThanOrEqualTo(query.Limit));
            all.AddRange(page.Rows);
            if (page.Next is null) { break; }
            Assert.That(page.Rows, Has.Count.EqualTo(query.Limit), "only the last page is short");
            if (betweenPages is not null) { await betweenPages(++pages); }
        }
        return all;
    }

    [TestCase("sqlite")]
    [TestCase("postgres")]
    public async Task Paging_in_every_order_walks_each_matching_unit_once_in_the_order_of_one_page(string kind)
    {
        var store = Store(kind);
        await store.Units.AddUnitsAsync(Fleet(450), null, "test", "unit.import", null, "450 units");
        foreach (var sort in Enum.GetValues<UnitSort>())
        {
            foreach (var descending in new[] { false, true })
            {
                var whole = await store.Pages.QueryUnitPageAsync(new UnitPageQuery(Sort: sort, Descending: descending, Limit: PageStore.MaxPageSize));
                Assert.That(whole.Next, Is.Null);
                Assert.That(whole.Rows, Has.Count.EqualTo(450));
                Assert.That(whole.Matching, Is.EqualTo(450));
                var paged = await WalkAsync(store, new UnitPageQuery(Sort: sort, Descending: descending, Limit: 37));
                Assert.That(paged.Select(r => r.Mac), Is.EqualTo(whole.Rows.Select(r => r.Mac)), $"{sort} {(descending ? "desc" : "asc")}");
                if (kind == "sqlite")
                {
                    // SQLite compares text byte by byte: the order is the ordinal one, MAC breaking ties
                    var keyed = whole.Rows.Select(r => (Key: Key(r, sort), r.Mac)).ToList();
                    var expected = descending
                        ? keyed.OrderByDescending(k => k.Key, StringComparer.Ordinal).ThenByDescending(k => k.Mac, StringComparer.Ordinal)
                        : keyed.OrderBy(k => k.Key, StringComparer.Ordinal).ThenBy(k => k.Mac, StringComparer.Ordinal);
                    Assert.That(keyed, Is.EqualTo(expected.ToList()), $"{sort} {(descending ? "desc" : "asc")}");
                }
            }
        }
    }

    private static string Key(UnitListRow r, UnitSort sort) => sort switch
    {
        UnitSort.Mac => r.Mac,
        UnitSort.Serial => r.Serial,
        UnitSort.State => r.State,
        UnitSort.Pattern => r.Pattern ?? "",
        UnitSort.Subscriber => r.Subscriber ?? "",
        UnitSort.LastSeen => r.LastSeen ?? "",
        _ => throw new ArgumentOutOfRangeException(nameof(sort)),
    };

    [TestCase("sqlite")]
    [TestCase("postgres")]
    public async Task Units_registered_during_a_walk_neither_repeat_nor_hide_the_units_that_were_there(string kind)
    {
        var store = Store(kind);
        var fleet = Fleet(200);
        await store.Units.AddUnitsAsync(fleet, null, "test", "unit.import", null, "200 units");
        // after each page, a new unit that sorts before everything already seen (and one after): an offset would shift
        var seen = await WalkAsync(store, new UnitPageQuery(Sort: UnitSort.Serial, Limit: 25), async page =>
            await store.Units.AddUnitsAsync(Fleet(1, 10_000 + page).Select(u => { u.Serial = "sn00000"; return u; })
                .Concat(Fleet(1, 20_000 + page).Select(u => { u.Serial = "sn99999"; return u; })).ToList(), null, "test", "unit.import", null, null));
        Assert.That(seen.Select(r => r.Mac), Is.Unique);
        Assert.That(seen.Select(r => r.Mac), Is.SupersetOf(fleet.Select(u => u.Mac)), "every unit there at the start is listed");
    }

    [TestCase("sqlite")]
    [TestCase("postgres")]
    public async Task Filters_find_the_units_they_name_and_count_all_of_them(string kind)
    {
        var store = Store(kind);
        var fleet = Fleet(300);
        await store.Units.AddUnitsAsync(fleet, null, "test", "unit.import", null, "300 units");
        async Task CheckAsync(UnitPageQuery query, Func<UnitRow, bool> expected, string what)
        {
            var want = fleet.Where(expected).Select(u => u.Mac).Order(StringComparer.Ordinal).ToList();
            Assert.That(want, Is.Not.Empty, $"{what}: the fleet has such units");
            var got = await WalkAsync(store, query with { Limit = 40 });
            Assert.That(got.Select(r => r.Mac), Is.EqualTo(want), what);
            Assert.That((await store.Pages.QueryUnitPageAsync(query with { Limit = 1 })).Matching, Is.EqualTo(want.Count), what);
        }
        await CheckAsync(new UnitPageQuery(MacFragment: "0012"), u => u.Mac.Replace(":", "").Contains("0012"), "MAC fragment across a separator");
        await CheckAsync(new UnitPageQuery(MacFragment: "Fa"), u => u.Mac.Replace(":", "").Contains("fa"), "MAC fragment in upper case");
        await CheckAsync(new UnitPageQuery(Subscriber: "sub007"), u => u.Subscriber == "sub007", "subscriber");
        await CheckAsync(new UnitPageQuery(Pattern: "pattern-2"), u => u.Pattern == "pattern-2", "pattern");
        await CheckAsync(new UnitPageQuery(NoPattern: true), u => u.Pattern is null, "no pattern");
        await CheckAsync(new UnitPageQuery(State: UnitStates.OffPattern, Pattern: "pattern-1"), u => u.State == UnitStates.OffPattern && u.Pattern == "pattern-1", "state and pattern");
        await CheckAsync(new UnitPageQuery(Serial: "sn00042"), u => u.Serial == "sn00042", "serial");
        await CheckAsync(new UnitPageQuery(Domain: "d07.EXAMPLE"), u => string.Equals(u.Domain, "d07.example", StringComparison.OrdinalIgnoreCase), "domain, in any case");
        await CheckAsync(new UnitPageQuery(Domain: "d07.example", Subscriber: "sub007"), u => string.Equals(u.Domain, "d07.example", StringComparison.OrdinalIgnoreCase) && u.Subscriber == "sub007",
            "domain and subscriber");
        Assert.That((await store.Pages.QueryUnitPageAsync(new UnitPageQuery(Domain: "d07"))).Rows, Is.Empty, "a domain is matched whole, not by a part");
        Assert.That((await store.Pages.QueryUnitPageAsync(new UnitPageQuery(Subscriber: "nobody"))).Rows, Is.Empty);
    }

    [TestCase("sqlite")]
    [TestCase("postgres")]
    public async Task The_audit_log_pages_newest_first_without_loss_or_repeat(string kind)
    {
        var store = Store(kind);
        for (var i = 0; i < 130; i++) { await store.AuditAsync(i % 2 == 0 ? "alice" : "bob", i % 3 == 0 ? "unit.check" : "pattern.verify", $"t{i}", null); }
        var ids = new List<long>();
        var page = await store.Pages.QueryAuditPageAsync(new AuditQuery(Actor: "alice", Limit: 25));
        while (true)
        {
            ids.AddRange(page.Rows.Select(r => r.Id));
            Assert.That(page.Rows.Select(r => r.Actor), Is.All.EqualTo("alice"));
            if (page.Before is null) { break; }
            page = await store.Pages.QueryAuditPageAsync(new AuditQuery(Actor: "alice", Before: page.Before, Limit: 25));
        }
        Assert.That(ids, Has.Count.EqualTo(65).And.Unique);
        Assert.That(ids, Is.Ordered.Descending);
        Assert.That((await store.Pages.QueryAuditPageAsync(new AuditQuery(Action: "unit.check", Limit: 500))).Rows, Has.Count.EqualTo(44));
    }

    [TestCase("sqlite")]
    [TestCase("postgres")]
    public async Task The_overview_counts_are_those_of_the_units_counted_one_by_one(string kind)
    {
        var store = Store(kind);
        var fleet = Fleet(230);
        await store.Units.AddUnitsAsync(fleet, null, "test", "unit.import", null, null);
        var online = fleet.Where((_, i) => i % 3 == 0).Select(u => u.Mac).ToHashSet();
        foreach (var mac in online) { await store.Units.SetPresenceAsync(mac, true); }

        var counts = await store.Pages.CountUnitsAsync();
        Assert.That((counts.Total, counts.Online), Is.EqualTo((230L, (long)online.Count)));
        Assert.That(counts.ByPattern, Is.EqualTo(fleet.GroupBy(u => u.Pattern).Select(g => (g.Key, (long)g.Count()))
            .OrderByDescending(g => g.Item2).ThenBy(g => g.Key, StringComparer.Ordinal).ToList()), "by pattern, most first, units on none included");
        Assert.That(counts.ByState, Is.EqualTo(fleet.GroupBy(u => u.State).Select(g => (g.Key, (long)g.Count()))
            .OrderByDescending(g => g.Item2).ThenBy(g => g.Key, StringComparer.Ordinal).ToList()), "by state, most first");
        Assert.That(counts.OnPattern("pattern-1"), Is.EqualTo(fleet.Count(u => u.Pattern == "pattern-1")));
        Assert.That(counts.OnPattern("pattern-none"), Is.Zero);
    }

    [Test]
    public void A_cursor_reads_back_as_written_and_anything_else_is_refused()
    {
        var cursor = new UnitCursor("2026-04-01T09:00:00.0000000Z", "02:54:00:00:00:01");
        Assert.That(UnitCursor.Decode(cursor.Encode()), Is.EqualTo(cursor));
        Assert.That(UnitCursor.Decode(new UnitCursor("", "02:54:00:00:00:01").Encode()), Is.EqualTo(new UnitCursor("", "02:54:00:00:00:01")));
        var bad = new[]
        {
            "", "x", "!!!!", "a", new string('A', 5000), Convert.ToBase64String(Encoding.UTF8.GetBytes("02:54:00:00:00:01")),
            Convert.ToBase64String(Encoding.UTF8.GetBytes("02-54-00-00-00-01|k")), Convert.ToBase64String(Encoding.UTF8.GetBytes("02:54:00:00:00:01|a\nb")),
            Convert.ToBase64String([0x30, 0xff, 0xfe, 0x7c]).TrimEnd('='), cursor.Encode()[..^1] + "*",
        };
        foreach (var token in bad) { Assert.That(UnitCursor.Decode(token), Is.Null, token.Length > 40 ? token[..40] : token); }
    }

    [Test]
    public async Task Wrong_list_parameters_are_answered_400_with_the_reason_and_never_an_error_of_the_server()
    {
        await using var server = await TestServer.StartAsync();
        await server.AddUnitsAsync(3);
        using var session = await RoleTests.ConsoleSession(server, DemoCatalogue.OperatorName, TestServer.Password);
        var ok = await session.GetAsync("/console/units?sort=last-seen&dir=desc&size=2");
        Assert.That(ok.StatusCode, Is.EqualTo(HttpStatusCode.OK));
        var okPage = await ok.Content.ReadAsStringAsync();
        Assert.That(okPage, Does.Contain("3 unit(s) match").And.Contain("id=\"next-page\""));
        Assert.That(await session.GetStringAsync("/console"), Does.Contain("id=\"total-units\">3<").And.Contain("id=\"online-units\">0<"), "the overview counts them");

        var wrong = new Dictionary<string, string>
        {
            ["size=0"] = "Page size", ["size=501"] = "Page size", ["size=abc"] = "Page size", ["size=-5"] = "Page size", ["size=99999999999999999999"] = "Page size",
            ["sort=mac;DROP TABLE units"] = "Sort", ["sort=inventory"] = "Sort", ["dir=sideways"] = "Direction",
            ["state=Ready%27--"] = "State", ["state=ready"] = "State", ["pattern=a%20b"] = "Pattern", ["pattern=" + new string('p', 65)] = "Pattern",
            ["mac=zz:zz"] = "MAC", ["mac=%25"] = "MAC", ["mac=0000000000001"] = "MAC", ["subscriber=a%0Ab"] = "Subscriber",
            ["serial=%00"] = "Serial", ["domain=a..b"] = "Domain", ["domain=-x.example"] = "Domain", ["domain=x%0A.example"] = "Domain", ["domain=" + new string('d', 254)] = "Domain", ["after=not-a-cursor"] = "damaged", ["after=" + new string('A', 3000)] = "damaged",
        };
        foreach (var (query, reason) in wrong)
        {
            var response = await session.GetAsync("/console/units?" + query);
            var body = await response.Content.ReadAsStringAsync();
            Assert.That(response.StatusCode, Is.EqualTo(HttpStatusCode.BadRequest), query);
            Assert.That(body, Does.Contain("The search was not run").And.Contain(reason), query);
            Assert.That(body, Does.Not.Contain("id=\"unit-table\""), $"{query}: nothing is listed");
        }
        var audit = await session.GetAsync("/console/audit?before=abc");
        Assert.That(audit.StatusCode, Is.EqualTo(HttpStatusCode.BadRequest));
        Assert.That(await audit.Content.ReadAsStringAsync(), Does.Contain("damaged"));
        Assert.That((await session.GetAsync("/console/audit?before=12&actor=x")).StatusCode, Is.EqualTo(HttpStatusCode.OK), "a good page link is read");
        var wrongAudit = new Dictionary<string, string>
        {
            ["before=0"] = "damaged", ["before=-1"] = "damaged", ["before=%2B5"] = "damaged", ["before=1e3"] = "damaged", ["before=0x10"] = "damaged",
            ["before=99999999999999999999"] = "damaged", ["before=1;DROP TABLE audit"] = "damaged",
            ["actor=a%00b"] = "Who", ["action=a%0Ab"] = "Action", ["target=" + new string('t', 257)] = "Target",
        };
        foreach (var (query, reason) in wrongAudit)
        {
            var response = await session.GetAsync("/console/audit?" + query);
            var body = await response.Content.ReadAsStringAsync();
            Assert.That(response.StatusCode, Is.EqualTo(HttpStatusCode.BadRequest), query);
            Assert.That(body, Does.Contain("The log was not read").And.Contain(reason), query);
            Assert.That(body, Does.Not.Contain("id=\"audit-table\""), $"{query}: nothing is listed");
        }
    }

    /// <summary>
    /// The units API searches as the console does: serial (exact), subscriber (exact) and domain (a DNS name, any case);
    /// a value the console refuses is 400 on the API too, naming the field, and lists nothing.
    /// </summary>
    [Test]
    public async Task The_units_API_searches_by_serial_subscriber_and_domain_with_the_consoles_rules()
    {
        await using var server = await TestServer.StartAsync();
        var units = await server.AddUnitsAsync(3);
        using (var c = server.Store.Database.Open())
        using (var update = c.CreateCommand())
        {
            update.CommandText = $"UPDATE units SET domain = 'Shop.Example', subscriber = 'carol' WHERE mac = '{units[1].Mac}'";
            await update.ExecuteNonQueryAsync();
        }
        var serial = (await server.Store.Units.GetUnitAsync(units[2].Mac))!.Serial;
        using var http = server.PinnedHttp();
        http.DefaultRequestHeaders.Authorization = new System.Net.Http.Headers.AuthenticationHeaderValue("Basic",
            Convert.ToBase64String(Encoding.UTF8.GetBytes($"{DemoCatalogue.OperatorName}:{TestServer.Password}")));

        async Task<List<string>> MacsAsync(string query)
        {
            using var response = await http.GetAsync("/api/v1/units?" + query);
            var body = await response.Content.ReadAsStringAsync();
            Assert.That(response.StatusCode, Is.EqualTo(HttpStatusCode.OK), $"{query}: {body}");
            return System.Text.Json.JsonDocument.Parse(body).RootElement.EnumerateArray().Select(u => u.GetProperty("mac").GetString()!).ToList();
        }
        Assert.That(await MacsAsync("domain=shop.example"), Is.EqualTo(new[] { units[1].Mac }), "the domain matches in any case");
        Assert.That(await MacsAsync("domain=SHOP.EXAMPLE&subscriber=carol"), Is.EqualTo(new[] { units[1].Mac }));
        Assert.That(await MacsAsync("domain=unit.example"), Is.EqualTo(new[] { units[0].Mac, units[2].Mac }));
        Assert.That(await MacsAsync($"serial={Uri.EscapeDataString(serial)}"), Is.EqualTo(new[] { units[2].Mac }));
        Assert.That(await MacsAsync($"serial={Uri.EscapeDataString(serial)}&domain=shop.example"), Is.Empty, "the filters combine");
        Assert.That(await MacsAsync("domain=&serial="), Has.Count.EqualTo(3), "empty is not given");

        var wrong = new Dictionary<string, string>
        {
            ["serial=%00"] = "serial", ["serial=" + new string('s', 65)] = "serial", ["subscriber=a%0Ab"] = "subscriber",
            ["domain=a..b"] = "domain", ["domain=-x.example"] = "domain", ["domain=x%0A.example"] = "domain", ["domain=" + new string('d', 254)] = "domain",
            ["domain=x.example%27--"] = "domain",
        };
        foreach (var (query, field) in wrong)
        {
            using var response = await http.GetAsync("/api/v1/units?" + query);
            var body = await response.Content.ReadAsStringAsync();
            Assert.That(response.StatusCode, Is.EqualTo(HttpStatusCode.BadRequest), $"{query}: {body}");
            Assert.That(body, Does.Contain($"\"field\":\"{field}\"").And.Not.Contain(units[0].Mac), query);
        }
    }

    /// <summary>
    /// 100,000 units in SQLite, written directly through the store; the time to the first byte of the unit list (first
    /// page, a deep page, each order, searches) and of the overview, as a browser would ask for them. The numbers go to
    /// the test output (docs/performance.md has those of a run); what is asserted is what keeps them flat: the MAC
    /// order reads its page from the primary key without sorting, and a page deep in the list is as complete as the first.
    /// </summary>
    [Test]
    public async Task The_list_of_100000_units_is_measured_and_pages_by_key()
    {
        await using var server = await TestServer.StartAsync();
        const int count = 100_000;
        var seeded = Stopwatch.StartNew();
        foreach (var chunk in Fleet(count).Chunk(10_000)) { await server.Store.Units.AddUnitsAsync(chunk, null, "bench", "unit.import", null, null); }
        seeded.Stop();
        TestContext.Out.WriteLine($"seeded {count} units in {seeded.Elapsed.TotalSeconds:F1} s");
        using var session = await RoleTests.ConsoleSession(server, DemoCatalogue.OperatorName, TestServer.Password);

        async Task<(double Ms, string Body)> FirstByte(string path)
        {
            var watch = Stopwatch.StartNew();
            using var response = await session.GetAsync(path, HttpCompletionOption.ResponseHeadersRead);
            await using var stream = await response.Content.ReadAsStreamAsync();
            var first = new byte[1];
            var n = await stream.ReadAsync(first);
            var ms = watch.Elapsed.TotalMilliseconds;
            Assert.That(response.StatusCode, Is.EqualTo(HttpStatusCode.OK), path);
            Assert.That(n, Is.EqualTo(1), path);
            using var reader = new StreamReader(stream);
            return (ms, (char)first[0] + await reader.ReadToEndAsync());
        }

        // a deep page: the cursor of the row 90,000 in MAC order (keyset: no rows before it are read)
        var deep = new UnitCursor(Mac(90_000), Mac(90_000)).Encode();
        var paths = new (string What, string Path)[]
        {
            ("unit list, first page (MAC order, 50 rows)", "/console/units"),
            ("unit list, page after row 90,000 (MAC order)", $"/console/units?after={deep}"),
            ("unit list, 500 rows", "/console/units?size=500"),
            ("unit list, by serial", "/console/units?sort=serial"),
            ("unit list, by last seen, newest first", "/console/units?sort=last-seen&dir=desc"),
            ("search: MAC fragment", "/console/units?mac=01:86:a0"),
            ("search: subscriber", "/console/units?subscriber=sub007"),
            ("search: domain", "/console/units?domain=d07.example"),
            ("search: pattern and state", "/console/units?pattern=pattern-1&state=Ready"),
            ("fleet overview", "/console"),
            ("audit log, first page", "/console/audit"),
        };
        await FirstByte("/console/units"); // warm: the first request compiles the page
        foreach (var (what, path) in paths)
        {
            var times = new List<double>();
            var body = "";
            for (var i = 0; i < 5; i++) { (var ms, body) = await FirstByte(path); times.Add(ms); }
            times.Sort();
            TestContext.Out.WriteLine($"| {what} | `{path.Replace(deep, "…")}` | {times[2]:F0} ms | {times[0]:F0}-{times[^1]:F0} ms |");
            if (path.StartsWith("/console/units", StringComparison.Ordinal))
            {
                Assert.That(body, Does.Contain("unit(s) match"), path);
            }
        }
        var deepPage = await session.GetStringAsync($"/console/units?after={deep}");
        Assert.That(deepPage, Does.Contain("100000 unit(s) match; showing 50").And.Contain(Mac(90_001)).And.Not.Contain($">{Mac(90_000)}<"));

        // the plan of the MAC-ordered page: the primary key gives the order, no sort of 100,000 rows
        using var c = new SqliteConnection($"Data Source={Path.Combine(server.Root, "server", "tsunagu.db")};Mode=ReadOnly;Pooling=False");
        c.Open();
        using var explain = c.CreateCommand();
        explain.CommandText = "EXPLAIN QUERY PLAN " + PageStore.UnitPageSql(UnitSort.Mac, descending: false, afterCursor: true);
        foreach (var (name, value) in new (string, object)[]
                 {
                     ("@MacLike", DBNull.Value), ("@Serial", DBNull.Value), ("@Subscriber", DBNull.Value), ("@Pattern", DBNull.Value), ("@NoPattern", 0),
                     ("@State", DBNull.Value), ("@Domain", DBNull.Value), ("@CursorKey", Mac(90_000)), ("@CursorMac", Mac(90_000)), ("@Take", 51),
                 })
        {
            explain.Parameters.AddWithValue(name, value);
        }
        var plan = new StringBuilder();
        using (var reader = explain.ExecuteReader()) { while (reader.Read()) { plan.AppendLine(reader.GetString(3)); } }
        Assert.That(plan.ToString(), Does.Not.Contain("TEMP B-TREE").And.Contain("(mac>?)"), plan.ToString());
    }
}
