using System.Net;
using System.Net.Http.Json;
using Tsunagu.Demo;
using Tsunagu.Protocol;

namespace Tsunagu.IntegrationTests;

/// <summary>
/// The cache statistics of a unit's ready report at the host: malformed or out-of-bounds numbers are refused (400) and
/// change nothing; good ones are stored and shown on the unit's console page; a report without them keeps the last.
/// </summary>
[NonParallelizable]
public class CacheStatisticsReportTests
{
    [SetUp]
    public void UseDatabase() => TestServer.DatabaseKind.Value = "sqlite";

    [Test]
    public async Task Malformed_cache_statistics_are_refused_and_change_nothing_good_ones_are_stored_and_shown()
    {
        await using var server = await TestServer.StartAsync();
        var mac = (await server.AddUnitsAsync(1))[0].Mac;
        using var http = await VpnKeyTests.UnitHttp(server, mac);
        UnitCacheReport[] hostile =
        [
            new(-1, 0, 0, 0),
            new(10, -1, 0, 0),
            new(10, 11, 0, 0),
            new(10, 5, -1, 0),
            new(10, 5, 100, -1),
            new(10, 5, 100, 101),
            new(UnitCacheReport.MaxRequests + 1, 0, 0, 0),
            new(10, 5, UnitCacheReport.MaxBytes + 1, 0),
            new(long.MaxValue, long.MaxValue, long.MaxValue, long.MaxValue),
            new(long.MinValue, 0, 0, 0),
        ];
        var before = HostileInputTests.Snapshot(server);
        foreach (var cache in hostile)
        {
            using var refused = await http.PostAsJsonAsync(Routes.Ready, new ReadyReport(VpnKeyTests.Factory(), null, "203.0.113.7", null, cache), ProtocolJson.Default.ReadyReport);
            var body = await refused.Content.ReadAsStringAsync();
            Assert.That(refused.StatusCode, Is.EqualTo(HttpStatusCode.BadRequest), $"{cache}: {body}");
            Assert.That(body, Does.Contain("cache."), "the problem names the field");
            Assert.That(HostileInputTests.Snapshot(server), Is.EqualTo(before), $"{cache}: refused, but the database changed");
        }

        // wrong JSON types, numbers beyond a long and missing numbers: a 400 from the binder, never a 5xx, and nothing stored
        var inventory = System.Text.Json.JsonSerializer.Serialize(VpnKeyTests.Factory(), ProtocolJson.Default.Inventory);
        foreach (var cache in new[]
                 {
                     "{\"requests\":\"10x\",\"hits\":1,\"bytesServed\":1,\"bytesSaved\":1}", "{\"requests\":1.5,\"hits\":1,\"bytesServed\":1,\"bytesSaved\":1}",
                     "{\"requests\":99999999999999999999,\"hits\":1,\"bytesServed\":1,\"bytesSaved\":1}", "[]", "\"x\"",
                     // a missing number is not a zero: an empty object would otherwise reset the statistics
                     "{}", "{\"requests\":10,\"hits\":1,\"bytesServed\":1}",
                 })
        {
            using var content = new StringContent($"{{\"inventory\":{inventory},\"configRevision\":null,\"wanAddress\":null,\"cache\":{cache}}}", System.Text.Encoding.UTF8, "application/json");
            using var refused = await http.PostAsync(Routes.Ready, content);
            Assert.That(refused.StatusCode, Is.EqualTo(HttpStatusCode.BadRequest), $"{cache}: {await refused.Content.ReadAsStringAsync()}");
            Assert.That(HostileInputTests.Snapshot(server), Is.EqualTo(before), $"{cache}: refused, but the database changed");
        }

        var good = new UnitCacheReport(40, 30, 8L << 20, 6L << 20);
        using (var accepted = await http.PostAsJsonAsync(Routes.Ready, new ReadyReport(VpnKeyTests.Factory(), null, "203.0.113.7", null, good), ProtocolJson.Default.ReadyReport))
        {
            Assert.That(accepted.StatusCode, Is.EqualTo(HttpStatusCode.OK), await accepted.Content.ReadAsStringAsync());
        }
        var row = (await server.Store.Units.GetUnitAsync(mac))!;
        Assert.That((row.CacheRequests, row.CacheHits, row.CacheBytesServed, row.CacheBytesSaved), Is.EqualTo(((long?)40, (long?)30, (long?)(8L << 20), (long?)(6L << 20))));
        Assert.That(row.CacheReportedAt, Is.Not.Null);

        // a unit without a cache (or older than the field) sends none: accepted, and the last statistics are kept
        using (var none = await http.PostAsJsonAsync(Routes.Ready, new ReadyReport(VpnKeyTests.Factory(), null, "203.0.113.7"), ProtocolJson.Default.ReadyReport))
        {
            Assert.That(none.StatusCode, Is.EqualTo(HttpStatusCode.OK));
        }
        Assert.That((await server.Store.Units.GetUnitAsync(mac))!.CacheHits, Is.EqualTo(30));

        using var console = await RoleTests.ConsoleSession(server, DemoCatalogue.OperatorName, TestServer.Password);
        var page = WebUtility.HtmlDecode(await console.GetStringAsync($"/console/units/{mac}"));
        var cell = page[page.IndexOf("id=\"unit-cache\"", StringComparison.Ordinal)..];
        cell = cell[..cell.IndexOf("</dd>", StringComparison.Ordinal)];
        Assert.That(cell, Does.Contain("30 hits of 40 requests (75%)").And.Contain("6.0 MiB of 8.0 MiB served from the cache"));
    }
}
