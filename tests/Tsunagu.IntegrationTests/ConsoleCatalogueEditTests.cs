using System.Net;
using System.Net.Http.Json;
using Microsoft.Extensions.DependencyInjection;
using Tsunagu.Demo;
using Tsunagu.Server.Apis;
using Tsunagu.Server.Data;
using Tsunagu.Server.Security;

namespace Tsunagu.IntegrationTests;

/// <summary>
/// Catalogue edits and deletions on the catalogue page and the API (CatalogueService's rules on both): patches added,
/// edited and deleted; software edited unless a pattern would disagree, deleted unless something lists it; draft
/// patterns deleted unless something refers to them. A refused change leaves the database as it was.
/// </summary>
[NonParallelizable]
public class ConsoleCatalogueEditTests
{
    [SetUp]
    public void SetUp() => TestServer.DatabaseKind.Value = "sqlite";

    private static Task<HttpResponseMessage> Post(HttpClient session, string handler, Dictionary<string, string> form) =>
        RoleTests.PostForm(session, $"/console/catalogue?handler={handler}", form);

    private static Dictionary<string, string> Patch(string id, string app, string importance, string version = "1.0.1") => new()
    {
        ["id"] = id, ["name"] = "fixes the vcp timeout", ["targetApp"] = app, ["version"] = version, ["importance"] = importance, ["osVersion"] = "", ["hardwareVersion"] = "",
    };

    [Test]
    public async Task Patches_software_and_draft_patterns_are_changed_where_the_rules_allow_and_a_refusal_changes_nothing()
    {
        await using var server = await TestServer.StartAsync();
        using var admin = await RoleTests.ConsoleSession(server, DemoCatalogue.OperatorName, TestServer.Password);
        async Task Refused(string handler, Dictionary<string, string> form, string why, string says)
        {
            var before = HostileInputTests.Snapshot(server);
            var response = await Post(admin, handler, form);
            Assert.That(response.StatusCode, Is.EqualTo(HttpStatusCode.Redirect), why);
            Assert.That(HostileInputTests.Snapshot(server), Is.EqualTo(before), $"{handler} {why}: refused, but the database changed");
            Assert.That(await admin.GetStringAsync("/console/catalogue"), Does.Contain(says), why);
        }
        async Task Done(string handler, Dictionary<string, string> form, string says)
        {
            Assert.That((await Post(admin, handler, form)).StatusCode, Is.EqualTo(HttpStatusCode.Redirect));
            Assert.That(await admin.GetStringAsync("/console/catalogue"), Does.Contain(says));
        }
        Assert.That(await admin.GetStringAsync("/console/catalogue"), Does.Contain("id=\"add-patch\""));

        // patches
        await Refused("AddPatch", Patch("vcp-fix-1", "no-such-app", "2"), "an application not catalogued", "Nothing was created: targetApp");
        await Refused("AddPatch", Patch("vcp-fix-1", "vcp", "9"), "importance outside 1..5", "Nothing was created: importance: 9 is outside 1..5");
        await Refused("AddPatch", Patch("vcp-fix-1", "vcp", "two"), "importance not a number", "Nothing was created: importance: a whole number");
        await Refused("AddPatch", Patch("vcp fix", "vcp", "2"), "an id with a space", "Nothing was created: id");
        await Done("AddPatch", Patch("vcp-fix-1", "vcp", "2"), "Patch vcp-fix-1 added.");
        await Refused("AddPatch", Patch("vcp-fix-1", "vcp", "2"), "an existing id", "already exists");
        await Refused("EditPatch", Patch("vcp-fix-1", "vcp", "0"), "importance outside 1..5", "Nothing was changed: importance: 0 is outside 1..5");
        await Refused("EditPatch", Patch("vcp-fix-1", "vcp", "1", "1.0\u0007"), "a control character", "Nothing was changed: version");
        await Refused("EditPatch", Patch("no-such-patch", "vcp", "1"), "an unknown patch", "Nothing was changed: patch no-such-patch does not exist");
        await Done("EditPatch", Patch("vcp-fix-1", "vcp", "1", "1.0.2"), "Patch vcp-fix-1 changed.");
        var patch = (await server.Store.Catalogue.ListPatchesAsync()).Single(p => p.Id == "vcp-fix-1");
        Assert.That((patch.Importance, patch.Version), Is.EqualTo((1L, "1.0.2")));

        // software: a requirement a pattern listing it would not meet is refused; the name may change
        Dictionary<string, string> Software(string app, string version, string name, string hardware) =>
            new() { ["appId"] = app, ["version"] = version, ["name"] = name, ["requiredHardware"] = hardware, ["requiredOs"] = "" };
        await Refused("EditSoftware", Software("vcp", "1.0.0", "vcp", "r9"), "a requirement pattern-1 does not meet", "Nothing was changed: requiredHardware: pattern pattern-1");
        await Refused("EditSoftware", Software("vcp", "9.9.9", "vcp", ""), "software not catalogued", "Nothing was changed: software vcp 9.9.9 is not in the catalogue");
        await Refused("EditSoftware", Software("vcp", "1.0.0", "", ""), "no name", "Nothing was changed: name: required");
        await Done("EditSoftware", Software("vcp", "1.0.0", "Voice control plane", "r1, r2"), "Software vcp 1.0.0 changed.");
        var vcp = (await server.Store.Catalogue.GetSoftwareAsync("vcp", "1.0.0"))!;
        Assert.That((vcp.Name, vcp.RequiredHardware), Is.EqualTo(("Voice control plane", "r1, r2")));
        await Refused("DeleteSoftware", new() { ["appId"] = "vcp", ["version"] = "1.0.0" }, "listed by a pattern", "Nothing was deleted: software vcp 1.0.0 is listed by pattern");
        await server.Store.Catalogue.AddSoftwareAsync(new SoftwareRow { AppId = "webfilter", Version = "1.0.0", Name = "Web filter" });
        await server.Store.Catalogue.AddPatchAsync(new PatchRow { Id = "webfilter-fix", Name = "", Version = "1.0.1", TargetApp = "webfilter", Importance = 3 });
        await Refused("DeleteSoftware", new() { ["appId"] = "webfilter", ["version"] = "1.0.0" }, "the last version a patch is for", "delete the patch first");
        await Done("DeletePatch", new() { ["id"] = "webfilter-fix" }, "Patch webfilter-fix deleted.");
        await Done("DeleteSoftware", new() { ["appId"] = "webfilter", ["version"] = "1.0.0" }, "Software webfilter 1.0.0 deleted.");
        Assert.That(await server.Store.Catalogue.GetSoftwareAsync("webfilter", "1.0.0"), Is.Null);
        Assert.That(await server.Store.CatalogueEdits.GetPatchAsync("webfilter-fix"), Is.Null);

        // patterns: only an unreferenced draft is deleted
        await server.App.Services.GetRequiredService<Tsunagu.Server.Catalogue.CatalogueService>().CreatePatternAsync(
            new Tsunagu.Server.Catalogue.NewPattern("pattern-9", "", DemoCatalogue.HardwareVersion, DemoCatalogue.OsVersion, DemoCatalogue.Pattern2Applications), DemoCatalogue.OperatorName);
        await Refused("DeletePattern", new() { ["id"] = DemoCatalogue.Pattern2 }, "a verified pattern", "only a draft can be deleted");
        await Done("DeletePattern", new() { ["id"] = "pattern-9" }, "Draft pattern pattern-9 deleted.");
        Assert.That(await server.Store.Catalogue.GetPatternAsync("pattern-9"), Is.Null);

        Assert.That((await server.Store.ListAuditAsync(30)).Where(a => a.Actor == DemoCatalogue.OperatorName).Select(a => a.Action).Reverse()
                .Where(a => a is "patch.add" or "patch.edit" or "patch.delete" or "software.edit" or "software.delete" or "pattern.delete"),
            Is.EqualTo(new[] { "patch.add", "patch.edit", "software.edit", "patch.delete", "software.delete", "pattern.delete" }));

        // the support role sees no form and is refused
        await server.Store.Accounts.UpsertOperatorAsync("sam", PasswordHasher.Hash("a support password"), newRole: OperatorRoles.Support);
        using var support = await RoleTests.ConsoleSession(server, "sam", "a support password");
        Assert.That(await support.GetStringAsync("/console/catalogue"), Does.Not.Contain("id=\"add-patch\"").And.Not.Contain("Edit or delete"));
        var unchanged = HostileInputTests.Snapshot(server);
        Assert.That((await Post(support, "DeletePatch", new() { ["id"] = "vcp-fix-1" })).StatusCode, Is.EqualTo(HttpStatusCode.Forbidden));
        Assert.That((await Post(support, "EditSoftware", Software("vcp", "1.0.0", "x", ""))).StatusCode, Is.EqualTo(HttpStatusCode.Forbidden));
        Assert.That(HostileInputTests.Snapshot(server), Is.EqualTo(unchanged));

        // the API: the same rules and errors
        using var api = server.PinnedHttp();
        api.DefaultRequestHeaders.Authorization = new System.Net.Http.Headers.AuthenticationHeaderValue("Basic",
            Convert.ToBase64String(System.Text.Encoding.UTF8.GetBytes($"{DemoCatalogue.OperatorName}:{TestServer.Password}")));
        api.DefaultRequestHeaders.Add(CrossSiteRequests.ClientHeader, "catalogue-edit-test");
        foreach (var (request, status, why) in new (Func<Task<HttpResponseMessage>>, HttpStatusCode, string)[]
                 {
                     (() => api.PutAsJsonAsync("/api/v1/patches/vcp-fix-1", new PatchRequest("other-id", "", "1.0.3", "vcp", 2, null, null)), HttpStatusCode.BadRequest, "an id that is not the patch's"),
                     (() => api.PutAsJsonAsync("/api/v1/patches/nope", new PatchRequest("nope", "", "1.0.3", "vcp", 2, null, null)), HttpStatusCode.NotFound, "an unknown patch"),
                     (() => api.PutAsJsonAsync("/api/v1/software/vcp/1.0.0", new SoftwareEdit("vcp", "r9", null)), HttpStatusCode.BadRequest, "a requirement a pattern does not meet"),
                     (() => api.DeleteAsync("/api/v1/software/vcp/1.0.0"), HttpStatusCode.Conflict, "software a pattern lists"),
                     (() => api.DeleteAsync($"/api/v1/patterns/{DemoCatalogue.Pattern1}"), HttpStatusCode.Conflict, "a verified pattern"),
                     (() => api.DeleteAsync("/api/v1/patterns/nope"), HttpStatusCode.NotFound, "an unknown pattern"),
                 })
        {
            var before = HostileInputTests.Snapshot(server);
            using var response = await request();
            Assert.That(response.StatusCode, Is.EqualTo(status), why);
            Assert.That(HostileInputTests.Snapshot(server), Is.EqualTo(before), why);
        }
        using (var edited = await api.PutAsJsonAsync("/api/v1/patches/vcp-fix-1", new PatchRequest("vcp-fix-1", "renamed", "1.0.3", "vcp", 2, null, null)))
        {
            Assert.That(edited.StatusCode, Is.EqualTo(HttpStatusCode.OK));
        }
        // the name is optional: a body with a null name or none at all is a patch without a name, never a 5xx
        using (var nullName = await api.PutAsync("/api/v1/patches/vcp-fix-1", JsonContent.Create(new { id = "vcp-fix-1", name = (string?)null, version = "1.0.3", targetApp = "vcp", importance = 2 })))
        {
            Assert.That(nullName.StatusCode, Is.EqualTo(HttpStatusCode.OK), await nullName.Content.ReadAsStringAsync());
        }
        using (var noName = await api.PostAsync("/api/v1/patches", JsonContent.Create(new { id = "vcp-fix-noname", version = "1.0.4", targetApp = "vcp", importance = 2 })))
        {
            Assert.That(noName.StatusCode, Is.EqualTo(HttpStatusCode.Created), await noName.Content.ReadAsStringAsync());
        }
        using (var noName = await api.PostAsync("/api/v1/patterns", JsonContent.Create(new { id = "pattern-noname", applications = Array.Empty<object>() })))
        {
            Assert.That((int)noName.StatusCode, Is.LessThan(500), await noName.Content.ReadAsStringAsync());
        }
        using (var deleted = await api.DeleteAsync("/api/v1/patches/vcp-fix-1"))
        {
            Assert.That(deleted.StatusCode, Is.EqualTo(HttpStatusCode.NoContent));
        }
        Assert.That(await server.Store.CatalogueEdits.GetPatchAsync("vcp-fix-1"), Is.Null);
    }
}
