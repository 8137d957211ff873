using System.Data.Common;
using System.Net;
using System.Net.Http.Headers;
using System.Net.Http.Json;
using System.Text;
using System.Text.Json;
using Tsunagu.Demo;
using Tsunagu.Protocol;
using Tsunagu.Server.Apis;
using Tsunagu.Server.Data;

namespace Tsunagu.IntegrationTests;

/// <summary>
/// Saves of a unit's service configuration that race (ServiceConfigs.AddUnitConfigAsync): a save made from revision n is stored
/// only while n is still the newest, compared and inserted in one statement, so of two saves from the same revision one
/// is stored and the other refused (never both, never a 5xx). The race is made deterministic: the other save's revision
/// is inserted in a transaction held open until this save waits for it.
/// </summary>
[NonParallelizable]
public class ConfigRaceTests
{
    /// <summary>Inserts revision <paramref name="revision"/> of <paramref name="mac"/> as another save would, in a transaction the caller commits.</summary>
    internal static (DbConnection Connection, DbTransaction Transaction) HoldOtherSave(TestServer server, string mac, long revision, string document)
    {
        var c = server.Store.Database.Open();
        var tx = c.BeginTransaction();
        using var insert = c.CreateCommand();
        insert.Transaction = tx;
        insert.CommandText = """
            INSERT INTO unit_configs (mac, revision, document, status, origin, created_at)
            VALUES (@mac, @revision, @document, 'provisional', 'operator', '2026-01-01T00:00:00.0000000Z')
            """;
        foreach (var (name, value) in new (string, object)[] { ("@mac", mac), ("@revision", revision), ("@document", document) })
        {
            var p = insert.CreateParameter();
            p.ParameterName = name;
            p.Value = value;
            insert.Parameters.Add(p);
        }
        insert.ExecuteNonQuery();
        return (c, tx);
    }

    /// <summary>Sends a request and returns it once it waits for the transaction the test holds (<see cref="StoreSeam.StartBlocked"/>).</summary>
    internal static Task<Task<HttpResponseMessage>> SendBlocked(TestServer server, string kind, string storeMethod, Func<Task<HttpResponseMessage>> send)
    {
        Assert.That(server.Store.Database.Kind == DatabaseKind.Postgres, Is.EqualTo(kind == "postgres"), "the server runs on the database the case names");
        return StoreSeam.StartBlocked(server.Store, server.Store.Database, storeMethod, send, Answer);
    }

    private static async Task<string> Answer(Task<HttpResponseMessage> request) =>
        request is Task<HttpResponseMessage> { IsCompletedSuccessfully: true } done ? $"{(int)done.Result.StatusCode} {await done.Result.Content.ReadAsStringAsync()}" : $"{request.Exception}";

    private static async Task<int> AuditedAsync(TestServer server, string mac, long revision) =>
        (await server.Store.ListAuditAsync(1000)).Count(a => a.Action == "unit.service-config" && a.Target == mac && a.Detail == $"revision {revision}");

    [TestCase("sqlite")]
    [TestCase("postgres")]
    public async Task Two_console_saves_from_the_same_revision_store_one_and_refuse_the_other(string kind)
    {
        TestServer.DatabaseKind.Value = kind;
        await using var server = await TestServer.StartAsync();
        var mac = (await server.AddUnitsAsync(1))[0].Mac;
        using var admin = await RoleTests.ConsoleSession(server, DemoCatalogue.OperatorName, TestServer.Password);
        var basis = (await server.Store.ServiceConfigs.LatestUnitConfigAsync(mac))!.Revision;
        var otherDocument = JsonSerializer.Serialize(DemoCatalogue.StandardServices with { Dns = DemoCatalogue.StandardServices.Dns with { LocalDomain = "other" } },
            ProtocolJson.Default.ServiceConfiguration);

        var (connection, transaction) = HoldOtherSave(server, mac, basis + 1, otherDocument);
        Task<HttpResponseMessage> save;
        using (connection)
        using (transaction)
        {
            save = await SendBlocked(server, kind, "InsertNextUnitConfigAsync", () => ConsoleServiceConfigTests.Post(admin, mac, "ServiceConfig", ConsoleServiceConfigTests.Fields(basis, "ads.example")));
            transaction.Commit();
        }
        using var response = await save;

        Assert.That(response.StatusCode, Is.EqualTo(HttpStatusCode.Redirect), "refused with the console's answer, not a server error");
        Assert.That(await admin.GetStringAsync($"/console/units/{mac}"), Does.Contain("Nothing was stored").And.Contain("changed since this page was shown"));
        var revisions = await server.Store.ServiceConfigs.ListUnitConfigsAsync(mac);
        Assert.That(revisions.Select(r => r.Revision), Is.EqualTo(Enumerable.Range(1, (int)basis + 1).Select(r => (long)r)), "the other save only: no second revision from the same page");
        Assert.That(revisions[^1].Document, Is.EqualTo(otherDocument), "the other save is kept as it was");
        Assert.That(await AuditedAsync(server, mac, basis + 2), Is.Zero, "nothing audited for the refused save");
    }

    [TestCase("sqlite")]
    [TestCase("postgres")]
    public async Task An_api_save_with_if_match_racing_another_save_is_409_and_without_it_takes_the_next_revision(string kind)
    {
        TestServer.DatabaseKind.Value = kind;
        await using var server = await TestServer.StartAsync();
        var mac = (await server.AddUnitsAsync(1))[0].Mac;
        using var http = server.OperatorHttp();
        using var get = await http.GetAsync($"{Routes.Units}/{mac}/service-config");
        var basis = (await server.Store.ServiceConfigs.LatestUnitConfigAsync(mac))!.Revision;
        Assert.That(get.Headers.ETag?.Tag, Is.EqualTo($"\"{basis}\""), "GET names the newest revision as ETag");
        var document = JsonSerializer.Serialize(DemoCatalogue.StandardServices, ProtocolJson.Default.ServiceConfiguration);

        // with If-Match: the racing save is refused, 409, nothing written
        var (connection, transaction) = HoldOtherSave(server, mac, basis + 1, document);
        Task<HttpResponseMessage> put;
        using (connection)
        using (transaction)
        {
            var request = new HttpRequestMessage(HttpMethod.Put, $"{Routes.Units}/{mac}/service-config") { Content = new StringContent(document, Encoding.UTF8, "application/json") };
            request.Headers.IfMatch.Add(new EntityTagHeaderValue($"\"{basis}\""));
            put = await SendBlocked(server, kind, "InsertNextUnitConfigAsync", () => http.SendAsync(request));
            transaction.Commit();
        }
        using (var refused = await put)
        {
            Assert.That(refused.StatusCode, Is.EqualTo(HttpStatusCode.Conflict), await refused.Content.ReadAsStringAsync());
            Assert.That(await refused.Content.ReadAsStringAsync(), Does.Contain($"changed since revision {basis}"));
        }
        Assert.That(await server.Store.ServiceConfigs.LatestUnitConfigRevisionAsync(mac), Is.EqualTo(basis + 1));
        Assert.That(await AuditedAsync(server, mac, basis + 2), Is.Zero);

        // without If-Match: the save is not refused and not a 5xx; it takes the revision after the racing one
        (connection, transaction) = HoldOtherSave(server, mac, basis + 2, document);
        using (connection)
        using (transaction)
        {
            put = await SendBlocked(server, kind, "InsertNextUnitConfigAsync", () => http.PutAsync($"{Routes.Units}/{mac}/service-config", new StringContent(document, Encoding.UTF8, "application/json")));
            transaction.Commit();
        }
        using (var stored = await put)
        {
            Assert.That(stored.StatusCode, Is.EqualTo(HttpStatusCode.OK), await stored.Content.ReadAsStringAsync());
            Assert.That((await stored.Content.ReadFromJsonAsync<UnitConfigAssigned>())!.Revision, Is.EqualTo(basis + 3));
        }
        Assert.That((await server.Store.ServiceConfigs.ListUnitConfigsAsync(mac)).Select(r => r.Revision), Is.EqualTo(Enumerable.Range(1, (int)basis + 3).Select(r => (long)r)));
        Assert.That(await AuditedAsync(server, mac, basis + 3), Is.EqualTo(1));

        // a stale If-Match without a race, and If-Match values that are no revision: refused, nothing written
        foreach (var (tag, status) in new[] { ($"\"{basis}\"", HttpStatusCode.Conflict), ("\"x1\"", HttpStatusCode.BadRequest), ("\"-1\"", HttpStatusCode.BadRequest),
                     ("\"1 2\"", HttpStatusCode.BadRequest), ("*", HttpStatusCode.BadRequest), ($"\"{new string('9', 30)}\"", HttpStatusCode.BadRequest) })
        {
            var before = await server.Store.ServiceConfigs.LatestUnitConfigRevisionAsync(mac);
            var request = new HttpRequestMessage(HttpMethod.Put, $"{Routes.Units}/{mac}/service-config") { Content = new StringContent(document, Encoding.UTF8, "application/json") };
            request.Headers.TryAddWithoutValidation("If-Match", tag);
            using var answer = await http.SendAsync(request);
            Assert.That(answer.StatusCode, Is.EqualTo(status), tag);
            Assert.That(await server.Store.ServiceConfigs.LatestUnitConfigRevisionAsync(mac), Is.EqualTo(before), $"{tag}: nothing stored");
        }
    }
}
