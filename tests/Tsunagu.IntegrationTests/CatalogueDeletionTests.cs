using System.Net;
using Dapper;
using Microsoft.Extensions.DependencyInjection;
using Tsunagu.Demo;
using Tsunagu.Protocol;
using Tsunagu.Server.Data;

namespace Tsunagu.IntegrationTests;

/// <summary>
/// Deleting update programs and registered install media (DELETE /api/v1/update-programs/{id}, /api/v1/media/{digest}):
/// removed and audited when nothing refers to them; 409 naming the referrer (a rollout still deciding, a unit that needs the
/// program) with nothing written; 404 for what does not exist, 400 for what is not an id or a digest; never a 5xx.
/// </summary>
[NonParallelizable]
public class CatalogueDeletionTests
{
    private const string Digest = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    [SetUp]
    public void SetUp() => TestServer.DatabaseKind.Value = "sqlite";

    /// <summary>What a refused deletion must leave as it was: the programs, the media, the audit log and the catalogue stamp.</summary>
    private static (string Programs, string Media, long Audit, string? Stamp) Marks(TestServer server)
    {
        using var c = server.Store.Database.Open();
        return (string.Join(",", c.Query<string>("SELECT id FROM update_programs ORDER BY id")), string.Join(",", c.Query<string>("SELECT digest FROM media ORDER BY digest")),
            c.ExecuteScalar<long>("SELECT COUNT(*) FROM audit"),
            c.ExecuteScalar<string?>("SELECT value FROM settings WHERE key = @key", new { key = CatalogueStore.CatalogueStampKey }));
    }

    private static readonly string Now = TsunaguStore.Timestamp(DateTimeOffset.UtcNow);

    // a rollout the engine can read, whose one wave stays open for 30 days: the engine's passes leave it running

    private static string RunningRollout(string name, string state = "running") => $$"""
        INSERT INTO rollouts (name, group_name, from_pattern, to_pattern, update_id, waves, success_percent, error_percent, on_error, min_wave_seconds,
                              state, open_waves, wave_opened_at, errors_since, reason, created_by, created_at, updated_at)
        VALUES ('{{name}}', 'g', '{{DemoCatalogue.Pattern1}}', '{{DemoCatalogue.Pattern2}}', '{{DemoCatalogue.UpdateId}}', '[{"percent":100}]', 90, 10, 'pause', 2592000,
                '{{state}}', 1, '{{Now}}', '{{Now}}', NULL, 'alice', '{{Now}}', '{{Now}}')
        """;

    [Test]
    public async Task An_update_program_nothing_refers_to_is_deleted_audited_and_no_longer_offered_and_its_bundle_stays()
    {
        await using var server = await TestServer.StartAsync();
        using var http = server.OperatorHttp("test");
        var program = (await server.Store.Catalogue.GetUpdateProgramAsync(DemoCatalogue.UpdateId))!;
        var artifact = server.App.Services.GetRequiredService<ArtifactStore>().PathOf(program.ArtifactSha256);
        Assert.That(artifact, Is.Not.Null, "the demo's program has its bundle");
        Assert.That(await server.Store.Catalogue.FindUpdateProgramAsync(DemoCatalogue.Pattern1), Is.Not.Null);
        var before = Marks(server);

        using var deleted = await http.DeleteAsync($"{Routes.Prefix}/update-programs/{DemoCatalogue.UpdateId}");

        Assert.That(deleted.StatusCode, Is.EqualTo(HttpStatusCode.NoContent), await deleted.Content.ReadAsStringAsync());
        Assert.That(await server.Store.Catalogue.GetUpdateProgramAsync(DemoCatalogue.UpdateId), Is.Null);
        Assert.That(await server.Store.Catalogue.FindUpdateProgramAsync(DemoCatalogue.Pattern1), Is.Null, "the catalogue every replica reads no longer offers it");
        var after = Marks(server);
        Assert.That(after.Audit, Is.EqualTo(before.Audit + 1), "one audit entry");
        Assert.That(after.Stamp, Is.Not.EqualTo(before.Stamp), "the catalogue stamp moved");
        var entry = (await server.Store.ListAuditAsync(1)).Single();
        Assert.That((entry.Actor, entry.Action, entry.Target), Is.EqualTo((DemoCatalogue.OperatorName, "update-program.delete", DemoCatalogue.UpdateId)));
        Assert.That(entry.Detail, Does.Contain(program.ArtifactSha256));
        Assert.That(File.Exists(artifact), "the bundle file stays in the artifact store");

        using var again = await http.DeleteAsync($"{Routes.Prefix}/update-programs/{DemoCatalogue.UpdateId}");
        Assert.That(again.StatusCode, Is.EqualTo(HttpStatusCode.NotFound));
        Assert.That(Marks(server), Is.EqualTo(after), "a second deletion writes nothing");
    }

    public enum Referrer { RunningRollout, PausedRollout, UnitBeingUpdated, UnitTargetingItsToPattern }

    [Test]
    public async Task An_update_program_something_refers_to_is_409_naming_the_referrer_and_nothing_changes([Values] Referrer referrer)
    {
        await using var server = await TestServer.StartAsync();
        using var http = server.OperatorHttp("test");
        var mac = (await server.AddUnitsAsync(1))[0].Mac;
        var (setup, named, release) = referrer switch
        {
            Referrer.RunningRollout => (RunningRollout("r-run"), "rollout r-run", "UPDATE rollouts SET state = 'completed'"),
            Referrer.PausedRollout => (RunningRollout("r-paused", "paused"), "rollout r-paused", "UPDATE rollouts SET state = 'aborted'"),
            Referrer.UnitBeingUpdated => ($"UPDATE units SET pattern = '{DemoCatalogue.Pattern1}', state = 'Updating' WHERE mac = '{mac}'", $"unit {mac}",
                $"UPDATE units SET pattern = '{DemoCatalogue.Pattern2}', state = 'Ready' WHERE mac = '{mac}'"),
            _ => ($"UPDATE units SET pattern = '{DemoCatalogue.Pattern1}', target_pattern = '{DemoCatalogue.Pattern2}', state = 'Ready' WHERE mac = '{mac}'", $"unit {mac}",
                $"UPDATE units SET target_pattern = NULL WHERE mac = '{mac}'"),
        };
        server.ExecuteSql(setup);
        var before = Marks(server);

        using var refused = await http.DeleteAsync($"{Routes.Prefix}/update-programs/{DemoCatalogue.UpdateId}");

        var body = await refused.Content.ReadAsStringAsync();
        Assert.That(refused.StatusCode, Is.EqualTo(HttpStatusCode.Conflict), body);
        Assert.That(body, Does.Contain($"update program {DemoCatalogue.UpdateId} is ").And.Contain(named));
        Assert.That(Marks(server), Is.EqualTo(before), "refused: the program stays, no audit entry, no new catalogue stamp");

        // once the referrer lets go (the rollout finished, the unit updated or retargeted) the same request deletes it
        server.ExecuteSql(release);
        using var deleted = await http.DeleteAsync($"{Routes.Prefix}/update-programs/{DemoCatalogue.UpdateId}");
        Assert.That(deleted.StatusCode, Is.EqualTo(HttpStatusCode.NoContent), await deleted.Content.ReadAsStringAsync());
        Assert.That(await server.Store.Catalogue.GetUpdateProgramAsync(DemoCatalogue.UpdateId), Is.Null);
    }

    [Test]
    public async Task A_program_with_a_way_back_is_409_until_the_way_back_is_deleted_and_no_downgrade_is_ever_offered()
    {
        await using var server = await TestServer.StartAsync();
        using var http = server.OperatorHttp("test");
        var forward = (await server.Store.Catalogue.GetUpdateProgramAsync(DemoCatalogue.UpdateId))!;
        await server.Store.Catalogue.AddUpdateProgramAsync(new UpdateProgramRow
        {
            Id = "back", FromPattern = forward.ToPattern, ToPattern = forward.FromPattern, Importance = 3, ArtifactSha256 = Digest, ArtifactSize = 1,
        });
        Assert.That(await server.Store.Catalogue.FindUpdateProgramAsync(forward.ToPattern), Is.Null, "precondition: the reverse program is a way back, offered to nobody");
        var before = Marks(server);

        using var refused = await http.DeleteAsync($"{Routes.Prefix}/update-programs/{DemoCatalogue.UpdateId}");
        // before: 204, and every unit on the to-pattern was then offered the way back as an ordinary update
        Assert.That(refused.StatusCode, Is.EqualTo(HttpStatusCode.Conflict));
        Assert.That(await refused.Content.ReadAsStringAsync(), Does.Contain("way back, back").And.Contain("delete the way back first"));
        Assert.That(Marks(server), Is.EqualTo(before), "nothing written");
        Assert.That(await server.Store.Catalogue.FindUpdateProgramAsync(forward.ToPattern), Is.Null, "still no downgrade offered");

        using var backDeleted = await http.DeleteAsync($"{Routes.Prefix}/update-programs/back");
        Assert.That(backDeleted.StatusCode, Is.EqualTo(HttpStatusCode.NoContent), "the way back itself can go");
        using var forwardDeleted = await http.DeleteAsync($"{Routes.Prefix}/update-programs/{DemoCatalogue.UpdateId}");
        Assert.That(forwardDeleted.StatusCode, Is.EqualTo(HttpStatusCode.NoContent), "then the program");
    }

    [Test]
    public async Task A_unit_targeting_the_to_pattern_does_not_hold_a_program_when_another_program_leads_there()
    {
        await using var server = await TestServer.StartAsync();
        using var http = server.OperatorHttp("test");
        var mac = (await server.AddUnitsAsync(1))[0].Mac;
        var demo = (await server.Store.Catalogue.GetUpdateProgramAsync(DemoCatalogue.UpdateId))!;
        await server.Store.Catalogue.UpsertUpdateProgramAsync(new UpdateProgramRow
        {
            Id = "p1-to-p2-b", FromPattern = DemoCatalogue.Pattern1, ToPattern = DemoCatalogue.Pattern2, Importance = 3, ArtifactSha256 = demo.ArtifactSha256, ArtifactSize = demo.ArtifactSize,
        });
        server.ExecuteSql($"UPDATE units SET pattern = '{DemoCatalogue.Pattern1}', target_pattern = '{DemoCatalogue.Pattern2}', state = 'Ready' WHERE mac = '{mac}'");

        using var first = await http.DeleteAsync($"{Routes.Prefix}/update-programs/{DemoCatalogue.UpdateId}");
        Assert.That(first.StatusCode, Is.EqualTo(HttpStatusCode.NoContent), await first.Content.ReadAsStringAsync());
        using var last = await http.DeleteAsync($"{Routes.Prefix}/update-programs/p1-to-p2-b");
        Assert.That(last.StatusCode, Is.EqualTo(HttpStatusCode.Conflict), "the last way to the unit's target stays");
        Assert.That(await last.Content.ReadAsStringAsync(), Does.Contain($"unit {mac}"));
        Assert.That(await server.Store.Catalogue.GetUpdateProgramAsync("p1-to-p2-b"), Is.Not.Null);
    }

    [Test]
    public async Task A_registered_medium_is_deleted_audited_and_then_not_genuine()
    {
        await using var server = await TestServer.StartAsync();
        using var http = server.OperatorHttp("test");
        await server.Store.Media.AddMediumAsync(Digest, "field kit");
        var before = Marks(server);

        // the digest in capitals names the same medium, as registration takes it
        using var deleted = await http.DeleteAsync($"{Routes.Media}/{Digest.ToUpperInvariant()}");

        Assert.That(deleted.StatusCode, Is.EqualTo(HttpStatusCode.NoContent), await deleted.Content.ReadAsStringAsync());
        Assert.That(await server.Store.Media.GetMediumAsync(Digest), Is.Null, "a unit presenting it is now told it is not genuine");
        Assert.That(Marks(server).Audit, Is.EqualTo(before.Audit + 1));
        var entry = (await server.Store.ListAuditAsync(1)).Single();
        Assert.That((entry.Action, entry.Target, entry.Detail), Is.EqualTo(("media.delete", Digest, "field kit")));
        using var again = await http.DeleteAsync($"{Routes.Media}/{Digest}");
        Assert.That(again.StatusCode, Is.EqualTo(HttpStatusCode.NotFound));
    }

    private static readonly string[] HostileIds =
    [
        "-leading-dash", "has space", new string('a', 65), "semi;colon", "quote'd", "tab%09id", "nul%00id", "%E3%81%82", "..%2F..%2Fetc", "a%0Ab",
    ];

    private static readonly string[] HostileDigests =
    [
        "nope", new string('a', 63), new string('a', 65), new string('g', 64), Digest + "%00", "%E3%81%82", "..%2F..%2Fetc",
    ];

    [Test]
    public async Task Hostile_ids_and_digests_are_400_unknown_ones_404_never_a_server_error_and_nothing_changes()
    {
        await using var server = await TestServer.StartAsync();
        using var http = server.OperatorHttp("test");
        await server.Store.Media.AddMediumAsync(Digest, "field kit");
        var before = Marks(server);
        var answers = new List<string>();
        foreach (var id in HostileIds)
        {
            using var r = await http.DeleteAsync($"{Routes.Prefix}/update-programs/{id}");
            answers.Add($"program {id}: {(int)r.StatusCode}");
            Assert.That(r.StatusCode, Is.AnyOf(HttpStatusCode.BadRequest, HttpStatusCode.NotFound), $"{id}: {await r.Content.ReadAsStringAsync()}");
        }
        foreach (var digest in HostileDigests)
        {
            using var r = await http.DeleteAsync($"{Routes.Media}/{digest}");
            answers.Add($"medium {digest}: {(int)r.StatusCode}");
            Assert.That(r.StatusCode, Is.EqualTo(HttpStatusCode.BadRequest), $"{digest}: {await r.Content.ReadAsStringAsync()}");
        }
        using (var unknown = await http.DeleteAsync($"{Routes.Prefix}/update-programs/no-such-program"))
        {
            Assert.That(unknown.StatusCode, Is.EqualTo(HttpStatusCode.NotFound));
            Assert.That(await unknown.Content.ReadAsStringAsync(), Does.Contain("update program no-such-program does not exist"));
        }
        using (var unknown = await http.DeleteAsync($"{Routes.Media}/{new string('f', 64)}"))
        {
            Assert.That(unknown.StatusCode, Is.EqualTo(HttpStatusCode.NotFound));
        }
        Assert.That(answers.Where(a => a.StartsWith("program", StringComparison.Ordinal) && !a.Contains("%2F", StringComparison.Ordinal)), Is.All.EndsWith(": 400"),
            "every malformed id that reaches the handler is refused as malformed");
        Assert.That(Marks(server), Is.EqualTo(before), "nothing was deleted or audited");
    }

    /// <summary>
    /// A rollout of the program is created while the program is being deleted (committed while the deletion waits for the
    /// catalogue's lock): the deletion reads the references inside its transaction, sees the rollout and is refused with 409
    /// naming it; the program stays and nothing is audited.
    /// </summary>
    [Test]
    public async Task A_rollout_created_while_its_program_is_deleted_is_seen_and_the_deletion_is_409([Values("sqlite", "postgres")] string kind)
    {
        TestServer.DatabaseKind.Value = kind;
        await using var server = await TestServer.StartAsync();
        using var http = server.OperatorHttp("test");
        var before = Marks(server);

        Task<HttpResponseMessage> answer;
        using (var c = server.Store.Database.Open())
        using (var tx = c.BeginTransaction())
        {
            if (kind == "postgres") { c.Execute("SELECT pg_advisory_xact_lock(@key)", new { key = CatalogueEditStore.CatalogueLockKey }, tx); }
            c.Execute(RunningRollout("race-r"), transaction: tx);
            answer = await ConfigRaceTests.SendBlocked(server, kind, "InCatalogueTransactionAsync", () => http.DeleteAsync($"{Routes.Prefix}/update-programs/{DemoCatalogue.UpdateId}"));
            tx.Commit();
        }
        using var response = await answer.WaitAsync(TimeSpan.FromSeconds(60));

        var body = await response.Content.ReadAsStringAsync();
        Assert.That(response.StatusCode, Is.EqualTo(HttpStatusCode.Conflict), body);
        Assert.That(body, Does.Contain("rollout race-r"));
        Assert.That(await server.Store.Catalogue.GetUpdateProgramAsync(DemoCatalogue.UpdateId), Is.Not.Null, "the program the rollout uses stays");
        var after = Marks(server);
        Assert.That((after.Programs, after.Audit, after.Stamp), Is.EqualTo((before.Programs, before.Audit, before.Stamp)), "refused: no audit entry and no new catalogue stamp");
    }
}
