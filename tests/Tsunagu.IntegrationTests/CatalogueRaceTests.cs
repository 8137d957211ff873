using System.Net;
using System.Net.Http.Headers;
using System.Net.Http.Json;
using Dapper;
using Tsunagu.Demo;
using Tsunagu.Protocol;
using Tsunagu.Server.Apis;
using Tsunagu.Server.Catalogue;
using Tsunagu.Server.Data;
using Tsunagu.Server.Fleet;
using Tsunagu.Server.Fleet.Rollouts;

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

    private static (long Audit, string? Stamp) Marks(TestServer server)
    {
        using var c = server.Store.Database.Open();
        return (c.ExecuteScalar<long>("SELECT COUNT(*) FROM audit"),
            c.ExecuteScalar<string?>("SELECT value FROM settings WHERE key = @key", new { key = CatalogueStore.CatalogueStampKey }));
    }

    [Test]
    public async Task A_catalogue_change_racing_another_sees_it_and_a_refusal_writes_nothing(
        [Values("sqlite", "postgres")] string kind, [Values] Race race)
    {
        TestServer.DatabaseKind.Value = kind;
        await using var server = await TestServer.StartAsync();
        using var http = server.OperatorHttp("test");
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
            if (kind == "postgres") { c.Execute("SELECT pg_advisory_xact_lock(@key)", new { key = CatalogueEditStore.CatalogueLockKey }, tx); }
            c.Execute(other, transaction: tx);
            answer = await ConfigRaceTests.SendBlocked(server, kind, "InCatalogueTransactionAsync", request);
            tx.Commit();
        }
        using var response = await answer;

        // a deletion refused because something refers to what it deletes is a conflict (409); an edit the catalogue no longer allows is 400
        var refusal = race is Race.DeleteSoftwareWhilePatternListsIt or Race.DeleteDraftPatternWhileProgramNamesIt ? HttpStatusCode.Conflict : HttpStatusCode.BadRequest;
        Assert.That(response.StatusCode, Is.EqualTo(refusal), await response.Content.ReadAsStringAsync());
        Assert.That(Marks(server), Is.EqualTo(before), "refused: no audit entry and no new catalogue stamp");
        using var check = server.Store.Database.Open();
        switch (race)
        {
            case Race.DeleteSoftwareWhilePatternListsIt:
                Assert.That(await response.Content.ReadAsStringAsync(), Does.Contain("listed by pattern race-p"));
                Assert.That(await server.Store.Catalogue.GetSoftwareAsync("race-app", "1.0"), Is.Not.Null, "the software the pattern lists stays");
                break;
            case Race.EditSoftwareWhilePatternListsIt:
                Assert.That(await response.Content.ReadAsStringAsync(), Does.Contain("requiredHardware: pattern race-p"));
                Assert.That((await server.Store.Catalogue.GetSoftwareAsync("race-app", "1.0"))!.RequiredHardware, Is.Null, "the requirement the pattern would not meet was not set");
                break;
            case Race.EditPatchWhileSoftwareDeleted:
                Assert.That(await response.Content.ReadAsStringAsync(), Does.Contain("targetApp"));
                Assert.That((await server.Store.CatalogueEdits.GetPatchAsync("race-fix"))!.TargetApp, Is.EqualTo("vcp"), "the patch is not pointed at software that is gone");
                break;
            default:
                Assert.That(await response.Content.ReadAsStringAsync(), Does.Contain("pattern race-draft is referred to by update program race-u; it cannot be deleted"));
                Assert.That(await server.Store.Catalogue.GetPatternAsync("race-draft"), Is.Not.Null, "the pattern the program names stays");
                break;
        }
    }

    private static long Count(TestServer server, string sql)
    {
        using var c = server.Store.Database.Open();
        return c.ExecuteScalar<long>(sql);
    }

    /// <summary>Runs <paramref name="change"/> in a transaction holding the catalogue lock (as the server's catalogue changes take it) until the request (<paramref name="request"/>) waits in <paramref name="storeMethod"/>, then commits.</summary>
    private static async Task<HttpResponseMessage> RaceAsync(TestServer server, string kind, string change, string storeMethod, Func<Task<HttpResponseMessage>> request)
    {
        Task<HttpResponseMessage> answer;
        using (var c = server.Store.Database.Open())
        using (var tx = c.BeginTransaction())
        {
            if (kind == "postgres") { c.Execute("SELECT pg_advisory_xact_lock(@key)", new { key = CatalogueEditStore.CatalogueLockKey }, tx); }
            c.Execute(change, transaction: tx);
            answer = await ConfigRaceTests.SendBlocked(server, kind, storeMethod, request);
            tx.Commit();
        }
        return await answer;
    }

    /// <summary>A draft pattern with one application, as the operator creates it.</summary>
    private static async Task AddDraftAsync(HttpClient http, string id)
    {
        Assert.That((await http.PostAsJsonAsync($"{Routes.Prefix}/software", new SoftwareRequest("race-app", "1.0", "race app", null, null))).StatusCode, Is.EqualTo(HttpStatusCode.Created));
        using var draft = await http.PostAsJsonAsync($"{Routes.Prefix}/patterns",
            new { id, hardwareVersion = DemoCatalogue.HardwareVersion, osVersion = DemoCatalogue.OsVersion, applications = new Dictionary<string, string> { ["race-app"] = "1.0" } });
        Assert.That(draft.StatusCode, Is.EqualTo(HttpStatusCode.Created), await draft.Content.ReadAsStringAsync());
    }

    /// <summary>
    /// A rollout is created while the catalogue removes its transition (the draft from-pattern and the program from it,
    /// committed while the rollout's request has read them and waits): the rollout reads the transition again under the
    /// catalogue lock and is refused with 409; no rollout, no member, no audit entry. Before, the rollout took no
    /// catalogue lock and was stored onto a pattern that no longer existed.
    /// </summary>
    [Test]
    public async Task A_rollout_created_while_its_draft_pattern_is_deleted_is_409_and_writes_nothing([Values("sqlite", "postgres")] string kind)
    {
        TestServer.DatabaseKind.Value = kind;
        await using var server = await TestServer.StartAsync();
        using var http = server.OperatorHttp("test");
        await AddDraftAsync(http, "race-draft");
        await server.Store.Catalogue.UpsertUpdateProgramAsync(new UpdateProgramRow
        {
            Id = "race-u", FromPattern = "race-draft", ToPattern = DemoCatalogue.Pattern2, Importance = 3, ArtifactSha256 = new string('a', 64), ArtifactSize = 1,
        });
        using (var group = await http.PostAsJsonAsync(FleetApi.GroupsRoute, new NewGroup("race-g", null, new GroupFilter(Pattern: "race-draft"))))
        {
            Assert.That(group.StatusCode, Is.EqualTo(HttpStatusCode.Created), await group.Content.ReadAsStringAsync());
        }
        var before = Marks(server);

        using var response = await RaceAsync(server, kind, "DELETE FROM update_programs WHERE id = 'race-u'; DELETE FROM patterns WHERE id = 'race-draft'", "AddRolloutAsync",
            () => http.PostAsJsonAsync(RolloutsApi.Route, new NewRollout("race-r", "race-g", "race-draft", DemoCatalogue.Pattern2, [new WaveSpec(Percent: 100)])));

        var body = await response.Content.ReadAsStringAsync();
        Assert.That(response.StatusCode, Is.EqualTo(HttpStatusCode.Conflict), body);
        Assert.That(body, Does.Contain("pattern 'race-draft' was deleted"));
        Assert.That(Count(server, "SELECT COUNT(*) FROM rollouts"), Is.Zero, "no rollout onto the deleted pattern");
        Assert.That(Count(server, "SELECT COUNT(*) FROM rollout_units"), Is.Zero);
        Assert.That(Marks(server), Is.EqualTo(before), "refused: no audit entry and no new catalogue stamp");
    }

    /// <summary>
    /// An update program is added while its draft from-pattern is deleted (committed while the request has checked the
    /// pattern and its bundle and waits for the catalogue lock): 409 naming the pattern, nothing stored. Before, the insert
    /// broke the foreign key and the answer was a 500.
    /// </summary>
    [Test]
    public async Task An_update_program_added_while_its_draft_from_pattern_is_deleted_is_409_and_writes_nothing([Values("sqlite", "postgres")] string kind)
    {
        TestServer.DatabaseKind.Value = kind;
        await using var server = await TestServer.StartAsync();
        using var http = server.OperatorHttp("test");
        await AddDraftAsync(http, "race-draft");
        using var bundle = new ByteArrayContent(DemoCatalogue.BuildBundle("race-u", 2, "race-draft", DemoCatalogue.Pattern2, DemoCatalogue.Pattern2Applications,
            server.ReleaseKey, DateTimeOffset.UtcNow));
        bundle.Headers.ContentType = new MediaTypeHeaderValue("application/octet-stream");
        using var uploaded = await http.PostAsync($"{Routes.Prefix}/artifacts", bundle);
        Assert.That(uploaded.IsSuccessStatusCode, await uploaded.Content.ReadAsStringAsync());
        var artifact = (await uploaded.Content.ReadFromJsonAsync<ArtifactView>())!;
        var before = Marks(server);

        using var response = await RaceAsync(server, kind, "DELETE FROM patterns WHERE id = 'race-draft'", "CatalogueWriteAsync",
            () => http.PostAsJsonAsync($"{Routes.Prefix}/update-programs", new NewUpdateProgram("race-u", "race-draft", DemoCatalogue.Pattern2, 3, 0, artifact.Sha256)));

        var body = await response.Content.ReadAsStringAsync();
        Assert.That(response.StatusCode, Is.EqualTo(HttpStatusCode.Conflict), body);
        Assert.That(body, Does.Contain("fromPattern: pattern 'race-draft' was deleted"));
        Assert.That(await server.Store.Catalogue.GetUpdateProgramAsync("race-u"), Is.Null, "no program from the deleted pattern");
        Assert.That(Marks(server), Is.EqualTo(before), "refused: no audit entry and no new catalogue stamp");
    }
}
