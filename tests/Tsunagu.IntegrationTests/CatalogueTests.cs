using System.Net.Http.Headers;
using System.Text;
using System.Text.Json;
using Tsunagu.Cli.Factory;
using Tsunagu.Demo;
using Tsunagu.Protocol;
using Tsunagu.Server.Apis;
using Tsunagu.Server.Catalogue;
using Tsunagu.Server.Data;

namespace Tsunagu.IntegrationTests;

/// <summary>The operator's catalogue and fleet API (patent 0044-0049, 0053, 0071), on both databases.</summary>
[NonParallelizable]
[TestFixture("sqlite")]
[TestFixture("postgres")]
public class CatalogueTests(string database)
{
    private static readonly JsonSerializerOptions Json = JsonSerializerOptions.Web;

    [SetUp]
    public void UseDatabase() => TestServer.DatabaseKind.Value = database;

    private static async Task<T> Call<T>(OperatorClient client, HttpMethod method, string path, object? body = null) =>
        JsonSerializer.Deserialize<T>(body is null ? await client.SendAsync(method, path, null, CancellationToken.None)
            : await client.SendJsonAsync(method, path, body, CancellationToken.None), Json)!;

    private static OperatorApiException Refused(OperatorClient client, HttpMethod method, string path, object? body, int status)
    {
        var e = Assert.ThrowsAsync<OperatorApiException>(() => body is null
            ? client.SendAsync(method, path, null, CancellationToken.None)
            : client.SendJsonAsync(method, path, body, CancellationToken.None));
        Assert.That(e!.Status, Is.EqualTo(status), e.Message);
        return e;
    }

    [Test]
    public async Task A_pattern_with_the_content_of_another_is_not_verified_and_no_program_leads_between_two_such()
    {
        // the host knows a unit's pattern by its inventory: two matchable patterns with the same versions would put units of
        // one on the other, and a program between them would be offered again after every install (a signature set that
        // changed only the databases did that)
        await using var server = await TestServer.StartAsync();
        using var client = server.Operator();
        var p2 = (await server.Store.Catalogue.GetPatternAsync(DemoCatalogue.Pattern2))!;
        var apps = JsonSerializer.Deserialize<Dictionary<string, string>>(p2.Applications)!;
        await Call<PatternView>(client, HttpMethod.Post, "/api/v1/patterns", new NewPattern("pattern-2-twin", "same as pattern 2", p2.HardwareVersion, p2.OsVersion, apps));
        var twin = Refused(client, HttpMethod.Post, "/api/v1/patterns/pattern-2-twin/verify", null, 400);
        Assert.That(twin.Message, Does.Contain($"application versions of verified pattern '{DemoCatalogue.Pattern2}'").And.Contain("virus signatures"));
        Assert.That((await server.Store.Catalogue.GetPatternAsync("pattern-2-twin"))!.Status, Is.EqualTo(PatternStatus.Draft), "the refused pattern stays a draft");

        // a catalogue that holds such a twin already (written before this rule): no program may lead to it from its twin
        await server.Store.Catalogue.UpsertPatternAsync(new PatternRow
        {
            Id = "pattern-2-legacy", Name = "an older twin", HardwareVersion = p2.HardwareVersion, OsVersion = p2.OsVersion, Applications = p2.Applications,
            Status = PatternStatus.Verified,
        });
        var artifact = await Upload(client, DemoCatalogue.BuildBundle("p2-to-legacy", 2, DemoCatalogue.Pattern2, "pattern-2-legacy",
            new Dictionary<string, string> { ["vcp"] = apps["vcp"] }, server.ReleaseKey, DateTimeOffset.UtcNow));
        var same = Refused(client, HttpMethod.Post, "/api/v1/update-programs", new NewUpdateProgram("p2-to-legacy", DemoCatalogue.Pattern2, "pattern-2-legacy", 5, 1, artifact.Sha256), 400);
        Assert.That(same.Message, Does.Contain("the unit's inventory would not change"));
        Assert.That(await server.Store.Catalogue.FindUpdateProgramAsync(DemoCatalogue.Pattern2, "pattern-2-legacy"), Is.Null, "nothing was added");

        // a version of one application more (the signature set named as an application) makes it a pattern of its own
        await Call<SoftwareRow>(client, HttpMethod.Post, "/api/v1/software", new SoftwareRequest("virus-signatures", "2026.12.1", "the virus signature set", null, null));
        await Call<PatternView>(client, HttpMethod.Post, "/api/v1/patterns", new NewPattern("pattern-2-sigs", "pattern 2 and signatures", p2.HardwareVersion, p2.OsVersion,
            apps.ToDictionary().With("virus-signatures", "2026.12.1")));
        Assert.That((await Call<PatternView>(client, HttpMethod.Post, "/api/v1/patterns/pattern-2-sigs/verify")).Status, Is.EqualTo(PatternStatus.Verified));
    }

    [Test]
    public async Task Pattern_lifecycle_follows_the_catalogue_rules()
    {
        await using var server = await TestServer.StartAsync();
        using var client = server.Operator();
        await Call<SoftwareRow>(client, HttpMethod.Post, "/api/v1/software", new SoftwareRequest("vcp", "2.0.0", "version check program", "r1", "tsunagu-os 1.0"));
        await Call<SoftwareRow>(client, HttpMethod.Post, "/api/v1/software", new SoftwareRequest("firewall", "2.0.0", "firewall", "r2", null));
        Refused(client, HttpMethod.Post, "/api/v1/software", new SoftwareRequest("vcp", "2.0.0", "again", null, null), 409);

        var apps = new Dictionary<string, string> { ["cache-manager"] = "1.0.0", ["firewall"] = "1.1.0", ["vcp"] = "2.0.0" };
        var uncatalogued = Refused(client, HttpMethod.Post, "/api/v1/patterns",
            new NewPattern("pattern-3", "p3", "r1", "tsunagu-os 1.0", apps.ToDictionary().With("vcp", "9.9.9")), 400);
        Assert.That(uncatalogued.Message, Does.Contain("vcp 9.9.9 is not in the software catalogue"));
        var wrongHardware = Refused(client, HttpMethod.Post, "/api/v1/patterns",
            new NewPattern("pattern-3", "p3", "r1", "tsunagu-os 1.0", apps.ToDictionary().With("firewall", "2.0.0")), 400);
        Assert.That(wrongHardware.Message, Does.Contain("requires hardware r2"));
        var wrongOs = Refused(client, HttpMethod.Post, "/api/v1/patterns", new NewPattern("pattern-3", "p3", "r1", "tsunagu-os 2.0", apps), 400);
        Assert.That(wrongOs.Message, Does.Contain("requires OS tsunagu-os 1.0"));

        var draft = await Call<PatternView>(client, HttpMethod.Post, "/api/v1/patterns", new NewPattern("pattern-3", "p3", "r1", "tsunagu-os 1.0", apps));
        Assert.That(draft.Status, Is.EqualTo(PatternStatus.Draft));

        var empty = Assert.ThrowsAsync<OperatorApiException>(() => client.SendAsync(HttpMethod.Post, "/api/v1/artifacts", new ByteArrayContent([]), CancellationToken.None));
        Assert.That(empty!.Status, Is.EqualTo(400));
        Assert.That(empty.Message, Does.Contain("empty"));
        var artifact = await Upload(client, DemoCatalogue.BuildBundle("p2-to-p3", 2, DemoCatalogue.Pattern2, "pattern-3", new Dictionary<string, string> { ["vcp"] = "2.0.0" }, server.ReleaseKey, DateTimeOffset.UtcNow));
        var toDraft = Refused(client, HttpMethod.Post, "/api/v1/update-programs", new NewUpdateProgram("p2-to-p3", DemoCatalogue.Pattern2, "pattern-3", 5, 1, artifact.Sha256), 400);
        Assert.That(toDraft.Message, Does.Contain("only a verified pattern can be a target"));
        var noArtifact = Refused(client, HttpMethod.Post, "/api/v1/update-programs", new NewUpdateProgram("p2-to-p3", DemoCatalogue.Pattern2, DemoCatalogue.Pattern1, 5, 1, new string('0', 64)), 400);
        Assert.That(noArtifact.Message, Does.Contain("upload it first"));

        var garbage = await Upload(client, "not a bundle at all"u8.ToArray());
        var notBundle = Refused(client, HttpMethod.Post, "/api/v1/update-programs", new NewUpdateProgram("p2-to-p3", DemoCatalogue.Pattern2, DemoCatalogue.Pattern1, 5, 1, garbage.Sha256), 400);
        Assert.That(notBundle.Message, Does.Contain("not an acceptable bundle"));
        var mismatched = Refused(client, HttpMethod.Post, "/api/v1/update-programs", new NewUpdateProgram("other-id", DemoCatalogue.Pattern2, DemoCatalogue.Pattern1, 5, 1, artifact.Sha256), 400);
        Assert.That(mismatched.Message, Does.Contain("'p2-to-p3'"));
        var wrongWay = Refused(client, HttpMethod.Post, "/api/v1/update-programs", new NewUpdateProgram("p2-to-p3", DemoCatalogue.Pattern2, DemoCatalogue.Pattern1, 5, 1, artifact.Sha256), 400);
        Assert.That(wrongWay.Message, Does.Contain("leads from pattern-2 to pattern-3"));

        var verified = await Call<PatternView>(client, HttpMethod.Post, "/api/v1/patterns/pattern-3/verify");
        Assert.That(verified.Status, Is.EqualTo(PatternStatus.Verified));
        Assert.That(verified.VerifiedAt, Is.Not.Null);
        Refused(client, HttpMethod.Post, "/api/v1/patterns/pattern-3/verify", null, 400);
        Refused(client, HttpMethod.Post, "/api/v1/patterns/nope/verify", null, 404);
        await Call<UpdateProgramRow>(client, HttpMethod.Post, "/api/v1/update-programs", new NewUpdateProgram("p2-to-p3", DemoCatalogue.Pattern2, "pattern-3", 5, 1, artifact.Sha256));
        Refused(client, HttpMethod.Post, "/api/v1/update-programs", new NewUpdateProgram("p2-to-p3", DemoCatalogue.Pattern2, "pattern-3", 5, 1, artifact.Sha256), 409);

        // retire: not while a unit targets it; afterwards no longer a target
        var unit = (await server.AddUnitsAsync(1))[0];
        await Call<UnitView>(client, HttpMethod.Put, $"/api/v1/units/{unit.Mac}/target-pattern", new TargetPatternRequest("pattern-3"));
        var busy = Refused(client, HttpMethod.Post, "/api/v1/patterns/pattern-3/retire", null, 400);
        Assert.That(busy.Message, Does.Contain("target of 1 unit"));
        await Call<UnitView>(client, HttpMethod.Put, $"/api/v1/units/{unit.Mac}/target-pattern", new TargetPatternRequest(null));
        var retired = await Call<PatternView>(client, HttpMethod.Post, "/api/v1/patterns/pattern-3/retire");
        Assert.That(retired.Status, Is.EqualTo(PatternStatus.Retired));
        Refused(client, HttpMethod.Put, $"/api/v1/units/{unit.Mac}/target-pattern", new TargetPatternRequest("pattern-3"), 400);
        Assert.That(await server.Store.Catalogue.FindUpdateProgramAsync(DemoCatalogue.Pattern2), Is.Null, "a program to a retired pattern is no longer offered");

        var audit = await Call<List<AuditRow>>(client, HttpMethod.Get, "/api/v1/audit?limit=50");
        Assert.That(audit.Select(a => a.Action), Is.SupersetOf(new[] { "software.add", "pattern.create", "pattern.verify", "artifact.upload", "update-program.add", "unit.target-pattern", "pattern.retire", "unit.register" }));
        Assert.That(audit.All(a => a.Actor == DemoCatalogue.OperatorName), Is.True);
    }

    [Test]
    public async Task An_update_program_defined_through_the_api_moves_the_fleet_when_forced()
    {
        await using var server = await TestServer.StartAsync();
        using var client = server.Operator();
        var units = await server.AddUnitsAsync(2);
        server.Fleet.StartAll();
        foreach (var u in units) { await server.WaitReadyAsync(u); }
        await server.WaitForAsync(() => units.All(u => u.Supervisor.Context.Push?.IsConnected == true), "units listening for pushes");

        await Call<SoftwareRow>(client, HttpMethod.Post, "/api/v1/software", new SoftwareRequest("vcp", "2.0.0", "vcp", "r1", null));
        await Call<PatternView>(client, HttpMethod.Post, "/api/v1/patterns",
            new NewPattern("pattern-3", "vcp 2", DemoCatalogue.HardwareVersion, DemoCatalogue.OsVersion, RolloutCatalogue.Pattern3Applications()));
        await Call<PatternView>(client, HttpMethod.Post, "/api/v1/patterns/pattern-3/verify");
        var artifact = await Upload(client, DemoCatalogue.BuildBundle("p2-to-p3", 2, DemoCatalogue.Pattern2, "pattern-3", new Dictionary<string, string> { ["vcp"] = "2.0.0" }, server.ReleaseKey, DateTimeOffset.UtcNow));
        // importance 1: only in the maintenance window or when forced
        await Call<UpdatePolicy>(client, HttpMethod.Put, "/api/v1/settings/update-policy", new UpdatePolicy(0.5, 0.5, 2, 5, MaintenanceStartHour: 0, MaintenanceEndHour: 0));
        await Call<UpdateProgramRow>(client, HttpMethod.Post, "/api/v1/update-programs", new NewUpdateProgram("p2-to-p3", DemoCatalogue.Pattern2, "pattern-3", 1, 1, artifact.Sha256));

        // a periodic-style check (not forced) is deferred
        units[0].Supervisor.RequestCheck(forced: false);
        await server.WaitReadyAsync(units[0], 2);
        Assert.That((await server.Store.Units.GetUnitAsync(units[0].Mac))!.Pattern, Is.EqualTo(DemoCatalogue.Pattern2));

        // forced, selected by software version: both units move to pattern 3
        var forced = await Call<ForceCheckResponse>(client, HttpMethod.Post, "/api/v1/units/check", new ForceCheckRequest(null, null, 1, "vcp", "1.2.0"));
        Assert.That(forced.Notified, Is.EquivalentTo(units.Select(u => u.Mac)));
        foreach (var u in units)
        {
            await server.WaitForAsync(async () => await server.Store.Units.GetUnitAsync(u.Mac) is { Pattern: "pattern-3", State: "Ready" }, $"{u.Mac} on pattern-3");
        }
        var onThree = await Call<List<UnitView>>(client, HttpMethod.Get, "/api/v1/units?app=vcp&version=2.0.0");
        Assert.That(onThree.Select(v => v.Mac), Is.EquivalentTo(units.Select(u => u.Mac)));
        Assert.That(onThree.All(v => v.Online), Is.True, "presence: both connected to the broker");
        Assert.That(await Call<List<UnitView>>(client, HttpMethod.Get, "/api/v1/units?app=vcp&version=1.2.0"), Is.Empty);
    }

    [Test]
    public async Task Units_on_a_retired_pattern_are_still_recognised_and_updated()
    {
        await using var server = await TestServer.StartAsync();
        using var client = server.Operator();
        var retired = await Call<PatternView>(client, HttpMethod.Post, $"/api/v1/patterns/{DemoCatalogue.Pattern1}/retire");
        Assert.That(retired.Status, Is.EqualTo(PatternStatus.Retired));
        var unit = (await server.AddUnitsAsync(1))[0]; // runs the factory software: pattern 1
        server.Fleet.Start(unit);
        await server.WaitReadyAsync(unit);
        var row = (await server.Store.Units.GetUnitAsync(unit.Mac))!;
        Assert.That((row.Pattern, row.LastError), Is.EqualTo(((string?)DemoCatalogue.Pattern2, (string?)null)), "recognised on the retired pattern and moved by its update program");
    }

    [Test]
    public async Task Bulk_registration_from_csv_is_all_or_nothing_with_an_error_per_row()
    {
        await using var server = await TestServer.StartAsync();
        using var client = server.Operator();
        const string bad = """
            mac,serial,hardware_version,isp_method,isp_username,isp_password,domain,target_pattern
            02:54:53:00:10:01,S1,r1,pppoe,u1@isp,pw1,one.example,pattern-2
            not-a-mac,S2,r1,pppoe,u2@isp,pw2,two.example,
            02:54:53:00:10:03,S3,r1,carrier-pigeon,,,three.example,
            02:54:53:00:10:01,S4,r1,dhcp,,,four.example,
            02:54:53:00:10:05,S5,r1,dhcp,,,five.example,pattern-9
            """;
        var e = Assert.ThrowsAsync<OperatorApiException>(() => client.SendAsync(HttpMethod.Post, "/api/v1/units/bulk", new StringContent(bad, Encoding.UTF8, "text/csv"), CancellationToken.None));
        var result = JsonSerializer.Deserialize<BulkRegisterResponse>(e!.Body!, Json)!;
        Assert.That(result.Registered, Is.Zero);
        Assert.That(result.Rows.Select(r => (r.Line, r.Error is null)), Is.EqualTo(new[] { (2, true), (3, false), (4, false), (5, false), (6, false) }));
        Assert.That(result.Rows[1].Error, Does.Contain("'not-a-mac'"));
        Assert.That(result.Rows[2].Error, Does.StartWith("isp.method"));
        Assert.That(result.Rows[3].Error, Does.Contain("appears twice"));
        Assert.That(result.Rows[4].Error, Does.Contain("pattern-9"));
        Assert.That(await server.Store.Units.ListUnitsAsync(), Is.Empty, "nothing registered from a file with errors");

        // a quoted cell keeps its comma and its doubled quote (a PPP user name takes no comma: WanAccountGrammar; the free-text vpn does)
        const string good = "mac,serial,isp_method,isp_username,isp_password,domain,vpn\r\n02:54:53:00:10:01,S1,pppoe,\"u1@isp\",pw1,one.example,\"office, \"\"east\"\"\"\r\n025453001002,S2,dhcp,,,two.example,\r\n";
        var ok = JsonSerializer.Deserialize<BulkRegisterResponse>(await client.SendAsync(HttpMethod.Post, "/api/v1/units/bulk", new StringContent(good, Encoding.UTF8, "text/csv"), CancellationToken.None), Json)!;
        Assert.That(ok.Registered, Is.EqualTo(2));
        Assert.That((await server.Store.Units.GetUnitAsync("02:54:53:00:10:01"))!.IspUsername, Is.EqualTo("u1@isp"));
        Assert.That((await server.Store.Units.GetUnitAsync("02:54:53:00:10:01"))!.Vpn, Is.EqualTo("office, \"east\""));
        Assert.That((await server.Store.Units.GetUnitAsync("02:54:53:00:10:02"))!.IspMethod, Is.EqualTo("dhcp"));
        Assert.That((await server.Store.ServiceConfigs.LatestUnitConfigAsync("02:54:53:00:10:02"))!.Revision, Is.EqualTo(1), "the default service configuration is assigned");
        var header = Refused(client, HttpMethod.Post, "/api/v1/units/bulk", null, 400);
        Assert.That(header.Message, Does.Contain("csv"));
    }

    [Test]
    public async Task Reports_are_idempotent_and_policy_changes_are_validated()
    {
        await using var server = await TestServer.StartAsync();
        using var client = server.Operator();
        var unit = (await server.AddUnitsAsync(1))[0];
        server.Fleet.Start(unit);
        await server.WaitReadyAsync(unit);
        Assert.That(await server.Store.History.CountUpdateReportsAsync(unit.Mac), Is.EqualTo(1));
        var first = (await server.Store.History.ListUpdateReportsAsync(unit.Mac)).Single();
        Assert.That(InstallIds.IsValid(first.InstallId), Is.True, "the unit names its install");
        var inventory = JsonSerializer.Deserialize((await server.Store.Units.GetUnitAsync(unit.Mac))!.Inventory!, ProtocolJson.Default.Inventory)!;
        var again = new UpdateOutcome(unit.Mac, DemoCatalogue.UpdateId, true, null, inventory, DemoCatalogue.Pattern2, UnitStates.Configuring, null, "installed again", first.InstallId);
        Assert.That((await server.Store.History.RecordUpdateOutcomeAsync(again)).IsNew, Is.False, "the same install's report again changes nothing");
        // a report without an install id (a unit older than the field) is keyed on unit, update and result, as before
        Assert.That(await server.Store.History.RecordUpdateReportAsync(unit.Mac, DemoCatalogue.UpdateId, true, null, DemoCatalogue.Pattern2), Is.True);
        Assert.That(await server.Store.History.RecordUpdateReportAsync(unit.Mac, DemoCatalogue.UpdateId, true, null, DemoCatalogue.Pattern2), Is.False, "the same report again changes nothing");
        Assert.That(await server.Store.ServiceConfigs.AckUnitConfigAsync(unit.Mac, 1, true, null), Is.True);
        Assert.That((await server.Store.Units.GetUnitAsync(unit.Mac))!.AppliedConfigRevision, Is.EqualTo(1));
        Assert.That(await server.Store.History.CountUpdateReportsAsync(unit.Mac), Is.EqualTo(2));

        var bad = Refused(client, HttpMethod.Put, "/api/v1/settings/update-policy", new UpdatePolicy(1.5, 0.5, 2, 5), 400);
        Assert.That(bad.Message, Does.Contain("cpuThreshold"));
        var hours = Refused(client, HttpMethod.Put, "/api/v1/settings/update-policy", new UpdatePolicy(0.5, 0.5, 2, 25), 400);
        Assert.That(hours.Message, Does.Contain("lowWindowEndHour"));
        var policy = await Call<UpdatePolicy>(client, HttpMethod.Get, "/api/v1/settings/update-policy");
        Assert.That(policy, Is.EqualTo(UpdatePolicy.Default));
    }

    [Test]
    public async Task The_openapi_document_describes_the_api()
    {
        await using var server = await TestServer.StartAsync();
        using var client = server.Operator();
        var doc = JsonDocument.Parse(await client.SendAsync(HttpMethod.Get, "/openapi/v1.json", null, CancellationToken.None));
        var paths = doc.RootElement.GetProperty("paths").EnumerateObject().Select(p => p.Name).ToList();
        Assert.That(paths, Is.SupersetOf(new[] { "/api/v1/units", "/api/v1/units/check", "/api/v1/units/bulk", "/api/v1/patterns", "/api/v1/patterns/{id}/verify",
            "/api/v1/update-programs", "/api/v1/artifacts", "/api/v1/software", "/api/v1/patches", "/api/v1/settings/update-policy", "/api/v1/audit",
            "/api/v1/host/version-check", "/api/v1/provisioning/settings" }));
    }

    private static async Task<ArtifactView> Upload(OperatorClient client, byte[] content)
    {
        var body = new ByteArrayContent(content);
        body.Headers.ContentType = new MediaTypeHeaderValue("application/octet-stream");
        return JsonSerializer.Deserialize<ArtifactView>(await client.SendAsync(HttpMethod.Post, "/api/v1/artifacts", body, CancellationToken.None), Json)!;
    }
}

internal static class DictionaryExtensions
{
    public static Dictionary<string, string> With(this Dictionary<string, string> d, string key, string value)
    {
        d[key] = value;
        return d;
    }
}
