using System.Net;
using System.Net.Http.Headers;
using System.Net.Http.Json;
using System.Text;
using Dapper;
using Tsunagu.Demo;
using Tsunagu.Protocol;
using Tsunagu.Server.Apis;
using Tsunagu.Server.Data;

namespace Tsunagu.IntegrationTests;

/// <summary>
/// Catalogue edits and deletions whose rules read other catalogue rows (CatalogueService.Edits.cs): the rules and the write
/// are one transaction that no other catalogue change interleaves with, so a change landing between the check and the
/// write is seen and the request refused, and a refused request writes nothing (no audit entry, no new catalogue stamp).
/// The race is made deterministic: the other change is made in a transaction (with the catalogue lock, as the server's own
/// changes take it) held open until the request waits for it.
/// </summary>
[NonParallelizable]
public class CatalogueRaceTests
{
    public enum Race { DeleteSoftwareWhilePatternListsIt, EditSoftwareWhilePatternListsIt, EditPatchWhileSoftwareDeleted, DeleteDraftPatternWhileProgramNamesIt }

    private static HttpClient OperatorHttp(TestServer server)
    {
        var http = server.PinnedHttp();
        http.DefaultRequestHeaders.Add("X-Tsunagu-Client", "test");
        http.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Basic",
            Convert.ToBase64String(Encoding.UTF8.GetBytes($"{DemoCatalogue.OperatorName}:{TestServer.Password}")));
        return http;
    }

    private static (long Audit, string? Stamp) Marks(TestServer server)
    {
        using var c = server.Store.Database.Open();
        return (c.ExecuteScalar<long>("SELECT COUNT(*) FROM audit"),
            c.ExecuteScalar<string?>("SELECT value FROM settings WHERE key = @key", new { key = TsunaguStore.CatalogueStampKey }));
    }

    [Test]
    public async Task A_catalogue_change_racing_another_sees_it_and_a_refusal_writes_nothing(
        [Values("sqlite", "postgres")] string kind, [Values] Race race)
    {
        TestServer.DatabaseKind.Value = kind;
        await using var server = await TestServer.StartAsync();
        using var http = OperatorHttp(server);
        Assert.That((await http.PostAsJsonAsync($"{Routes.Prefix}/software", new SoftwareRequest("race-app", "1.0", "race app", null, null))).StatusCode, Is.EqualTo(HttpStatusCode.Created));
        Assert.That((await http.PostAsJsonAsync($"{Routes.Prefix}/patches", new PatchRequest("race-fix", "fix", "1.0.1", "vcp", 2, null, null))).StatusCode, Is.EqualTo(HttpStatusCode.Created));
        if (race == Race.DeleteDraftPatternWhileProgramNamesIt)
        {
            using var draft = await http.PostAsJsonAsync($"{Routes.Prefix}/patterns",
                new { id = "race-draft", hardwareVersion = DemoCatalogue.HardwareVersion, osVersion = DemoCatalogue.OsVersion, applications = new Dictionary<string, string> { ["race-app"] = "1.0" } });
            Assert.That(draft.StatusCode, Is.EqualTo(HttpStatusCode.Created), await draft.Content.ReadAsStringAsync());
        }

        var before = Marks(server);
        var (other, request) = race switch
        {
            Race.DeleteSoftwareWhilePatternListsIt => (
                "INSERT INTO patterns (id, name, hardware_version, os_version, applications, status, created_at) VALUES ('race-p', 'race-p', 'hw-a', 'os-a', '{\"race-app\":\"1.0\"}', 'draft', 'x')",
                (Func<Task<HttpResponseMessage>>)(() => http.DeleteAsync($"{Routes.Prefix}/software/race-app/1.0"))),
            Race.EditSoftwareWhilePatternListsIt => (
                "INSERT INTO patterns (id, name, hardware_version, os_version, applications, status, created_at) VALUES ('race-p', 'race-p', 'hw-a', 'os-a', '{\"race-app\":\"1.0\"}', 'draft', 'x')",
                () => http.PutAsJsonAsync($"{Routes.Prefix}/software/race-app/1.0", new SoftwareEdit("race app", "hw-b", null))),
            Race.EditPatchWhileSoftwareDeleted => (
                "DELETE FROM software WHERE app_id = 'race-app'",
                () => http.PutAsJsonAsync($"{Routes.Prefix}/patches/race-fix", new PatchRequest("race-fix", "fix", "1.0.1", "race-app", 2, null, null))),
            _ => (
                $"INSERT INTO update_programs (id, from_pattern, to_pattern, importance, priority, artifact_sha256, artifact_size, created_at) VALUES ('race-u', 'race-draft', '{DemoCatalogue.Pattern1}', 3, 0, '{new string('a', 64)}', 1, 'x')",
                () => http.DeleteAsync($"{Routes.Prefix}/patterns/race-draft")),
        };

        Task<HttpResponseMessage> answer;
        using (var c = server.Store.Database.Open())
        using (var tx = c.BeginTransaction())
        {
            if (kind == "postgres") { c.Execute("SELECT pg_advisory_xact_lock(@key)", new { key = TsunaguStore.CatalogueLockKey }, tx); }
            c.Execute(other, transaction: tx);
            answer = request();
            await ConfigRaceTests.WaitUntilBlocked(server, kind, answer);
            tx.Commit();
        }
        using var response = await answer;

        Assert.That(response.StatusCode, Is.EqualTo(HttpStatusCode.BadRequest), await response.Content.ReadAsStringAsync());
        Assert.That(Marks(server), Is.EqualTo(before), "refused: no audit entry and no new catalogue stamp");
        using var check = server.Store.Database.Open();
        switch (race)
        {
            case Race.DeleteSoftwareWhilePatternListsIt:
                Assert.That(await response.Content.ReadAsStringAsync(), Does.Contain("listed by pattern race-p"));
                Assert.That(server.Store.GetSoftware("race-app", "1.0"), Is.Not.Null, "the software the pattern lists stays");
                break;
            case Race.EditSoftwareWhilePatternListsIt:
                Assert.That(await response.Content.ReadAsStringAsync(), Does.Contain("requiredHardware: pattern race-p"));
                Assert.That(server.Store.GetSoftware("race-app", "1.0")!.RequiredHardware, Is.Null, "the requirement the pattern would not meet was not set");
                break;
            case Race.EditPatchWhileSoftwareDeleted:
                Assert.That(await response.Content.ReadAsStringAsync(), Does.Contain("targetApp"));
                Assert.That(server.Store.GetPatch("race-fix")!.TargetApp, Is.EqualTo("vcp"), "the patch is not pointed at software that is gone");
                break;
            default:
                Assert.That(await response.Content.ReadAsStringAsync(), Does.Contain("1 update program(s)"));
                Assert.That(server.Store.GetPattern("race-draft"), Is.Not.Null, "the pattern the program names stays");
                break;
        }
    }
}
