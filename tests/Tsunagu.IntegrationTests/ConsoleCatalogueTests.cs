using System.Net;
using System.Net.Http.Headers;
using System.Security.Cryptography;
using Tsunagu.Demo;
using Tsunagu.Server.Apis;
using Tsunagu.Server.Data;
using Tsunagu.Server.Security;

namespace Tsunagu.IntegrationTests;

/// <summary>
/// The catalogue page's forms (Pages/Console/Catalogue.cshtml): software and draft patterns are created by the API's
/// rules; a wrong or conflicting form and a role that may not create change nothing.
/// </summary>
[NonParallelizable]
public class ConsoleCatalogueTests
{
    [SetUp]
    public void SetUp() => TestServer.DatabaseKind.Value = "sqlite";

    [TearDown]
    public void TearDown() => TestServer.Configure.Value = null;

    private static Task<HttpResponseMessage> Post(HttpClient session, string handler, Dictionary<string, string> form) =>
        RoleTests.PostForm(session, $"/console/catalogue?handler={handler}", form);

    private static async Task Refused(TestServer server, HttpClient session, string handler, Dictionary<string, string> form, string why)
    {
        var before = HostileInputTests.Snapshot(server);
        var response = await Post(session, handler, form);
        Assert.That(response.StatusCode, Is.EqualTo(HttpStatusCode.Redirect), why);
        Assert.That(HostileInputTests.Snapshot(server), Is.EqualTo(before), $"{handler} {why}: refused, but the database changed");
        Assert.That(await session.GetStringAsync("/console/catalogue"), Does.Contain("Nothing was created"), why);
    }

    [Test]
    public async Task Software_and_a_draft_pattern_are_created_by_the_api_rules_and_a_wrong_form_changes_nothing()
    {
        await using var server = await TestServer.StartAsync();
        using var admin = await RoleTests.ConsoleSession(server, DemoCatalogue.OperatorName, TestServer.Password);
        Assert.That(await admin.GetStringAsync("/console/catalogue"), Does.Contain("id=\"add-software\"").And.Contain("id=\"create-pattern\""));

        Dictionary<string, string> Software(string app, string version) => new() { ["appId"] = app, ["version"] = version, ["name"] = "Web filter", ["requiredHardware"] = "", ["requiredOs"] = "" };
        await Refused(server, admin, "AddSoftware", Software("web filter", "1.0.0"), "id with a space");
        await Refused(server, admin, "AddSoftware", Software("webfilter", "1.0\n.0"), "control character");
        await Refused(server, admin, "AddSoftware", Software("vcp", "1.0.0"), "already catalogued");
        var added = await Post(admin, "AddSoftware", Software("webfilter", "2.0.0"));
        Assert.That(added.StatusCode, Is.EqualTo(HttpStatusCode.Redirect));
        Assert.That((await server.Store.Catalogue.GetSoftwareAsync("webfilter", "2.0.0"))?.Name, Is.EqualTo("Web filter"));
        Assert.That(await admin.GetStringAsync("/console/catalogue"), Does.Contain("Software webfilter 2.0.0 added."));

        var apps = string.Join("\n", DemoCatalogue.Pattern2Applications.Select(a => $"{a.Key}={a.Value}")) + "\nwebfilter=2.0.0";
        Dictionary<string, string> Pattern(string id, string applications) => new()
        {
            ["id"] = id, ["name"] = "with filter", ["hardwareVersion"] = DemoCatalogue.HardwareVersion, ["osVersion"] = DemoCatalogue.OsVersion, ["applications"] = applications,
        };
        await Refused(server, admin, "CreatePattern", Pattern("pattern-9", apps + "\nwebfilter=9.9.9"), "an application twice");
        await Refused(server, admin, "CreatePattern", Pattern("pattern-9", apps.Replace("webfilter=2.0.0", "webfilter=3.0.0")), "a version not catalogued");
        await Refused(server, admin, "CreatePattern", Pattern("pattern-9", "no equals sign"), "a line without =");
        await Refused(server, admin, "CreatePattern", Pattern("pattern-9", ""), "no application");
        await Refused(server, admin, "CreatePattern", Pattern(DemoCatalogue.Pattern2, apps), "an existing id");
        var created = await Post(admin, "CreatePattern", Pattern("pattern-9", apps));
        Assert.That(created.StatusCode, Is.EqualTo(HttpStatusCode.Redirect));
        Assert.That((await server.Store.Catalogue.GetPatternAsync("pattern-9"))?.Status, Is.EqualTo(PatternStatus.Draft));

        // a support account sees no form and is refused: nothing changes
        using (var client = server.Operator())
        {
            await client.SendJsonAsync(HttpMethod.Post, "/api/v1/operators", new NewOperator("helpdesk", "a console test password", OperatorRoles.Support), CancellationToken.None);
        }
        using var support = await RoleTests.ConsoleSession(server, "helpdesk", "a console test password");
        Assert.That(await support.GetStringAsync("/console/catalogue"), Does.Not.Contain("id=\"add-software\""));
        var before = HostileInputTests.Snapshot(server);
        Assert.That((await Post(support, "AddSoftware", Software("other", "1.0.0"))).StatusCode, Is.EqualTo(HttpStatusCode.Forbidden));
        Assert.That((await Post(support, "CreatePattern", Pattern("pattern-10", apps))).StatusCode, Is.EqualTo(HttpStatusCode.Forbidden));
        Assert.That(HostileInputTests.Snapshot(server), Is.EqualTo(before));
    }

    [Test]
    public async Task A_genuine_medium_is_registered_by_the_apis_rules_and_a_wrong_form_changes_nothing()
    {
        await using var server = await TestServer.StartAsync();
        using var admin = await RoleTests.ConsoleSession(server, DemoCatalogue.OperatorName, TestServer.Password);
        Assert.That(await admin.GetStringAsync("/console/catalogue"), Does.Contain("id=\"register-medium\""));
        var digest = Convert.ToHexString(SHA256.HashData("a genuine install stick"u8));
        Dictionary<string, string> Medium(string d, string name) => new() { ["digest"] = d, ["name"] = name };

        async Task RefusedMedium(HttpClient session, Dictionary<string, string> form, string why, HttpStatusCode status = HttpStatusCode.Redirect)
        {
            var before = HostileInputTests.Snapshot(server);
            var response = await Post(session, "RegisterMedium", form);
            Assert.That(response.StatusCode, Is.EqualTo(status), why);
            Assert.That(HostileInputTests.Snapshot(server), Is.EqualTo(before), $"{why}: refused, but the database changed");
            if (status == HttpStatusCode.Redirect) { Assert.That(await session.GetStringAsync("/console/catalogue"), Does.Contain("Nothing was registered"), why); }
        }

        await RefusedMedium(admin, Medium(digest[..63], "stick"), "a digest one digit short");
        await RefusedMedium(admin, Medium(digest[..63] + "g", "stick"), "a digest with a letter beyond f");
        await RefusedMedium(admin, Medium(digest, ""), "no name");
        await RefusedMedium(admin, Medium(digest, "stick\u001b[2J"), "an escape sequence in the name");
        await RefusedMedium(admin, Medium(digest, new string('n', 129)), "a name too long");
        var registered = await Post(admin, "RegisterMedium", Medium(digest, "  Factory stick 2026  "));
        Assert.That(registered.StatusCode, Is.EqualTo(HttpStatusCode.Redirect));
        Assert.That(await server.Store.Media.GetMediumAsync(digest.ToLowerInvariant()), Is.EqualTo(new Tsunagu.Protocol.MediaRegistration(digest.ToLowerInvariant(), "Factory stick 2026")),
            "stored as the API stores it: digest in lower case, name trimmed");
        Assert.That(await admin.GetStringAsync("/console/catalogue"), Does.Contain($"id=\"medium-{digest.ToLowerInvariant()}\""));
        await RefusedMedium(admin, Medium(digest.ToLowerInvariant(), "again"), "the same digest twice");
        Assert.That((await server.Store.ListAuditAsync(20)).Count(a => a.Action == "media.register"), Is.EqualTo(1));

        // support and auditors see no form and are refused
        using (var client = server.Operator())
        {
            await client.SendJsonAsync(HttpMethod.Post, "/api/v1/operators", new NewOperator("helpdesk", "a console test password", OperatorRoles.Support), CancellationToken.None);
        }
        using var support = await RoleTests.ConsoleSession(server, "helpdesk", "a console test password");
        Assert.That(await support.GetStringAsync("/console/catalogue"), Does.Not.Contain("id=\"register-medium\""));
        await RefusedMedium(support, Medium(Convert.ToHexString(SHA256.HashData("other"u8)), "other"), "support's role", HttpStatusCode.Forbidden);
    }

    private static async Task<HttpResponseMessage> Upload(HttpClient session, byte[]? bundle, string id, string from, string to, string importance = "2")
    {
        var form = new MultipartFormDataContent
        {
            { new StringContent(await RoleTests.Csrf(session)), "__csrf" },
            { new StringContent(id), "id" }, { new StringContent(from), "fromPattern" }, { new StringContent(to), "toPattern" },
            { new StringContent(importance), "importance" }, { new StringContent("1"), "priority" },
        };
        if (bundle is not null)
        {
            var file = new ByteArrayContent(bundle);
            file.Headers.ContentType = new MediaTypeHeaderValue("application/octet-stream");
            form.Add(file, "bundle", "update.tsb");
        }
        return await session.PostAsync("/console/programs", form);
    }

    [Test]
    public async Task An_update_program_is_added_with_its_signed_bundle_and_a_bad_signature_keeps_nothing()
    {
        using var release = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        using var stranger = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        TestServer.Configure.Value = o => o.ReleasePublicKeys = [Convert.ToBase64String(release.ExportSubjectPublicKeyInfo())];
        await using var server = await TestServer.StartAsync();
        using var admin = await RoleTests.ConsoleSession(server, DemoCatalogue.OperatorName, TestServer.Password);
        var artifactDirectory = Path.Combine(server.Root, "server", "artifacts");
        string[] Artifacts() => Directory.Exists(artifactDirectory) ? [.. Directory.GetFiles(artifactDirectory).Order()] : [];
        byte[] Bundle(string id, ECDsa key) => DemoCatalogue.BuildBundle(id, 7, DemoCatalogue.Pattern2, DemoCatalogue.Pattern1,
            new Dictionary<string, string> { ["vcp"] = "1.0.0" }, key, DateTimeOffset.UtcNow);

        async Task Refused(byte[]? bundle, string id, string importance, string why, string says)
        {
            var before = HostileInputTests.Snapshot(server);
            var artifacts = Artifacts();
            var response = await Upload(admin, bundle, id, DemoCatalogue.Pattern2, DemoCatalogue.Pattern1, importance);
            Assert.That(response.StatusCode, Is.EqualTo(HttpStatusCode.Redirect), why);
            Assert.That(HostileInputTests.Snapshot(server), Is.EqualTo(before), $"{why}: refused, but the database changed");
            Assert.That(Artifacts(), Is.EqualTo(artifacts), $"{why}: refused, but an artifact was kept");
            Assert.That(await admin.GetStringAsync("/console/programs"), Does.Contain("Nothing was added").And.Contain(says), why);
        }

        Assert.That(await admin.GetStringAsync("/console/programs"), Does.Contain("id=\"add-program\""));
        await Refused(Bundle("p2-back", stranger), "p2-back", "2", "signed by a key the server does not trust", "not an acceptable bundle");
        await Refused([.. Bundle("p2-back", release).Take(300)], "p2-back", "2", "a truncated bundle", "not an acceptable bundle");
        await Refused(Bundle("other-id", release), "p2-back", "2", "a bundle for another program", "the bundle&#x27;s id is");
        await Refused(Bundle("p2-back", release), "p2-back", "9", "importance outside 1..5", "outside 1..5");
        await Refused(Bundle("p2-back", release), "p2-back", "two", "importance not a number", "importance: a whole number");
        await Refused(null, "p2-back", "2", "no file", "choose the signed bundle");
        await Refused(Bundle(DemoCatalogue.UpdateId, release), DemoCatalogue.UpdateId, "2", "an existing program id", "already exists");

        var good = Bundle("p2-back", release);
        var added = await Upload(admin, good, "p2-back", DemoCatalogue.Pattern2, DemoCatalogue.Pattern1);
        Assert.That(added.StatusCode, Is.EqualTo(HttpStatusCode.Redirect));
        var sha = Convert.ToHexStringLower(SHA256.HashData(good));
        var row = (await server.Store.Catalogue.ListUpdateProgramsAsync()).Single(p => p.Id == "p2-back");
        Assert.That((row.FromPattern, row.ToPattern, row.Importance, row.Priority, row.ArtifactSha256, row.ArtifactSize),
            Is.EqualTo((DemoCatalogue.Pattern2, DemoCatalogue.Pattern1, 2L, 1L, sha, (long)good.Length)));
        Assert.That(File.ReadAllBytes(Path.Combine(artifactDirectory, sha)), Is.EqualTo(good));
        var audit = await server.Store.ListAuditAsync(10);
        Assert.That(audit.Count(a => a.Action == "update-program.add" && a.Target == "p2-back" && a.Actor == DemoCatalogue.OperatorName), Is.EqualTo(1));
        Assert.That(audit.Count(a => a.Action == "artifact.upload" && a.Target == sha), Is.EqualTo(1));
        var page = await admin.GetStringAsync("/console/programs");
        Assert.That(page, Does.Contain("Update program p2-back added").And.Contain("id=\"program-p2-back\"").And.Contain(sha));
    }

    [Test]
    public async Task A_units_target_pattern_is_set_from_its_page_by_the_apis_rules_and_roles()
    {
        await using var server = await TestServer.StartAsync();
        var mac = (await server.AddUnitsAsync(1))[0].Mac;
        await server.Store.Accounts.UpsertOperatorAsync("sam", Server.Security.PasswordHasher.Hash("a support password"), newRole: OperatorRoles.Support);
        using var admin = await RoleTests.ConsoleSession(server, DemoCatalogue.OperatorName, TestServer.Password);
        using var support = await RoleTests.ConsoleSession(server, "sam", "a support password");
        using (var client = server.Operator())
        {
            await client.SendJsonAsync(HttpMethod.Post, "/api/v1/patterns",
                new Server.Catalogue.NewPattern("pattern-3", "p3", DemoCatalogue.HardwareVersion, DemoCatalogue.OsVersion, DemoCatalogue.Pattern2Applications), CancellationToken.None);
        }
        async Task<HttpResponseMessage> Set(HttpClient session, string target) =>
            await session.PostAsync($"/console/units/{mac}?handler=TargetPattern",
                new FormUrlEncodedContent(new Dictionary<string, string> { ["__csrf"] = await RoleTests.Csrf(session), ["target"] = target }));

        var page = await admin.GetStringAsync($"/console/units/{mac}");
        Assert.That(page, Does.Contain("id=\"target-form\"").And.Contain($"<option value=\"{DemoCatalogue.Pattern2}\">").And.Not.Contain("<option value=\"pattern-3\">"),
            "only verified patterns are offered");
        Assert.That(await support.GetStringAsync($"/console/units/{mac}"), Does.Not.Contain("id=\"target-form\""), "support may not set targets");

        foreach (var (session, target, status, why) in new[]
                 {
                     (admin, "pattern-3", HttpStatusCode.Redirect, "a draft pattern"), (admin, "no-such-pattern", HttpStatusCode.Redirect, "an unknown pattern"),
                     (admin, "bad id\n", HttpStatusCode.Redirect, "not an identifier"), (support, DemoCatalogue.Pattern2, HttpStatusCode.Forbidden, "the support role"),
                 })
        {
            var before = HostileInputTests.Snapshot(server);
            var response = await Set(session, target);
            Assert.That(response.StatusCode, Is.EqualTo(status), why);
            Assert.That(HostileInputTests.Snapshot(server), Is.EqualTo(before), $"{why}: refused, but the database changed");
        }
        Assert.That(await admin.GetStringAsync($"/console/units/{mac}"), Does.Contain("Nothing was changed"));

        Assert.That((await Set(admin, DemoCatalogue.Pattern2)).StatusCode, Is.EqualTo(HttpStatusCode.Redirect));
        Assert.That((await server.Store.Units.GetUnitAsync(mac))!.TargetPattern, Is.EqualTo(DemoCatalogue.Pattern2));
        Assert.That(await admin.GetStringAsync($"/console/units/{mac}"), Does.Contain($"now targets {DemoCatalogue.Pattern2}"));
        Assert.That((await Set(admin, "")).StatusCode, Is.EqualTo(HttpStatusCode.Redirect));
        Assert.That((await server.Store.Units.GetUnitAsync(mac))!.TargetPattern, Is.Null);
        Assert.That((await server.Store.ListAuditAsync(10)).Where(a => a.Action == "unit.target-pattern" && a.Target == mac).Select(a => (a.Actor, a.Detail)),
            Is.EqualTo(new[] { (DemoCatalogue.OperatorName, "none"), (DemoCatalogue.OperatorName, DemoCatalogue.Pattern2) }));
    }
}
