using System.Net.Http.Json;
using Tsunagu.Cli.Factory;
using Tsunagu.Demo;
using Tsunagu.Protocol;
using Tsunagu.Server.Fleet;
using Tsunagu.Server.Fleet.Rollouts;
using Tsunagu.Server.Units.Lifecycle;

namespace Tsunagu.IntegrationTests;

/// <summary>
/// `tsunagu software|patch|pattern|program|media delete` against the real server: a deletion prints one line, exits 0 and
/// the API no longer lists the entry; a refusal prints the server's problem detail, exits 1 and changes nothing (the
/// catalogue as the API lists it and every table of the database); an argument the server's grammar refuses is refused
/// before any request.
/// </summary>
[NonParallelizable]
public class CliDeletionTests
{
    private const string Digest = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    [SetUp]
    public void SetUp() => TestServer.DatabaseKind.Value = "sqlite";

    private static Task<(int Exit, string Out, string Err)> Tsunagu(TestServer? server, params string[] args) => CliTests.Tsunagu(server, args);

    private static Task<string> Get(OperatorClient api, string path) => api.SendAsync(HttpMethod.Get, path, null, CancellationToken.None);

    /// <summary>The catalogue as the API lists it, and a digest of every table: what a refused deletion must leave as it was.</summary>
    private static async Task<string> Everything(TestServer server, OperatorClient api) =>
        string.Join("\n", await Get(api, "/api/v1/software"), await Get(api, "/api/v1/patches"), await Get(api, "/api/v1/patterns"),
            await Get(api, "/api/v1/update-programs"), await Get(api, Routes.Media), HostileInputTests.Snapshot(server));

    /// <summary>Runs a deletion the server refuses: exit 1, the status and the problem's detail on standard error, nothing on standard output, nothing changed.</summary>
    private static async Task Refused(TestServer server, OperatorClient api, string status, string detail, params string[] args)
    {
        var before = await Everything(server, api);
        var (exit, output, err) = await Tsunagu(server, args);
        var what = string.Join(' ', args);
        Assert.Multiple(() =>
        {
            Assert.That(exit, Is.EqualTo(1), $"{what}: {output}{err}");
            Assert.That(err.Trim(), Does.StartWith("error: DELETE /api/v1/").And.Contain($": {status} {detail}"), what);
            Assert.That(err.Trim(), Does.Not.Contain('\n'), $"{what}: one line");
            Assert.That(output, Is.Empty, what);
        });
        Assert.That(await Everything(server, api), Is.EqualTo(before), $"{what}: refused, but something changed");
    }

    /// <summary>Runs a deletion that succeeds: exit 0, exactly <paramref name="line"/> on standard output, the audit's newest entry is <paramref name="action"/>.</summary>
    private static async Task Deleted(TestServer server, string line, string action, params string[] args)
    {
        using var api = server.Operator();
        var before = await Everything(server, api);
        var (exit, output, err) = await Tsunagu(server, args);
        Assert.That(exit, Is.Zero, err);
        Assert.That(output, Is.EqualTo(line + Environment.NewLine));
        var entry = (await server.Store.ListAuditAsync(1)).Single();
        Assert.That((entry.Actor, entry.Action), Is.EqualTo((DemoCatalogue.OperatorName, action)));
        // the same comparison a refusal relies on sees a deletion (so "nothing changed" there can fail)
        Assert.That(await Everything(server, api), Is.Not.EqualTo(before), $"{string.Join(' ', args)}: deleted, but the comparison saw no change");
    }

    [Test]
    public async Task Software_and_patch_delete_go_when_nothing_needs_them_and_a_refusal_prints_the_servers_reason()
    {
        await using var server = await TestServer.StartAsync();
        using var api = server.Operator();
        var (exit, _, err) = await Tsunagu(server, "software", "add", "--app", "dns-cache", "--version", "1.0.0");
        Assert.That(exit, Is.Zero, err);
        (exit, _, err) = await Tsunagu(server, "patch", "add", "--id", "dns-cve-1", "--version", "1.0.1", "--target-app", "dns-cache", "--importance", "4");
        Assert.That(exit, Is.Zero, err);

        await Refused(server, api, "409", $"software vcp {DemoCatalogue.Pattern2Applications["vcp"]} is listed by pattern {DemoCatalogue.Pattern2}; it cannot be deleted",
            "software", "delete", "--app", "vcp", "--version", DemoCatalogue.Pattern2Applications["vcp"]);
        await Refused(server, api, "409", "software dns-cache 1.0.0 is the last version of dns-cache, which patch dns-cve-1 is for; delete the patch first",
            "software", "delete", "--app", "dns-cache", "--version", "1.0.0");
        await Refused(server, api, "404", "software vcp 9.9.9 is not in the catalogue", "software", "delete", "--app", "vcp", "--version", "9.9.9");
        await Refused(server, api, "404", "patch no-such-patch does not exist", "patch", "delete", "no-such-patch");

        await Deleted(server, "deleted patch dns-cve-1", "patch.delete", "patch", "delete", "dns-cve-1");
        Assert.That(await Get(api, "/api/v1/patches"), Does.Not.Contain("dns-cve-1"), "the API lists it no more");
        await Refused(server, api, "404", "patch dns-cve-1 does not exist", "patch", "delete", "dns-cve-1");

        await Deleted(server, "deleted software dns-cache 1.0.0", "software.delete", "software", "delete", "--app", "dns-cache", "--version", "1.0.0");
        Assert.That(await Get(api, "/api/v1/software?appId=dns-cache"), Is.EqualTo("[]"), "the API lists it no more");
        Assert.That(await Get(api, "/api/v1/software?appId=vcp"), Does.Contain(DemoCatalogue.Pattern2Applications["vcp"]), "the refused one stays");
    }

    [Test]
    public async Task Pattern_delete_takes_a_draft_and_refuses_a_verified_pattern_a_referred_to_draft_or_an_unknown_one()
    {
        await using var server = await TestServer.StartAsync();
        using var api = server.Operator();
        var (exit, _, err) = await Tsunagu(server, "software", "add", "--app", "vcp", "--version", "2.0.0", "--requires-hardware", DemoCatalogue.HardwareVersion);
        Assert.That(exit, Is.Zero, err);
        (exit, _, err) = await Tsunagu(server, "pattern", "create", "--id", "pattern-3", "--hardware", DemoCatalogue.HardwareVersion, "--os", DemoCatalogue.OsVersion,
            "--apps", "cache-manager=1.0.0", "firewall=1.1.0", "vcp=2.0.0");
        Assert.That(exit, Is.Zero, err);

        await Refused(server, api, "409", $"pattern {DemoCatalogue.Pattern2} is verified; only a draft can be deleted (retire a verified one)",
            "pattern", "delete", DemoCatalogue.Pattern2);
        await Refused(server, api, "404", "pattern pattern-9 does not exist", "pattern", "delete", "pattern-9");
        // a draft an update program leaves from: refused naming the program, until the program is deleted
        await CatalogueSteps.AddUpdateProgramAsync(api, "p3-to-p2", "pattern-3", DemoCatalogue.Pattern2,
            3, new Dictionary<string, string> { ["vcp"] = DemoCatalogue.Pattern2Applications["vcp"] }, 5, server.ReleaseKey, CancellationToken.None);
        // two programs leave from it: the first by name, and how many more
        await CatalogueSteps.AddUpdateProgramAsync(api, "p3-to-p1", "pattern-3", DemoCatalogue.Pattern1, 4,
            new Dictionary<string, string> { ["firewall"] = DemoCatalogue.FactoryApplications["firewall"], ["vcp"] = DemoCatalogue.FactoryApplications["vcp"] },
            5, server.ReleaseKey, CancellationToken.None);
        await Refused(server, api, "409", "pattern pattern-3 is referred to by update program p3-to-p1 and 1 more; it cannot be deleted", "pattern", "delete", "pattern-3");
        await Deleted(server, "deleted update program p3-to-p1", "update-program.delete", "program", "delete", "p3-to-p1");
        await Refused(server, api, "409", "pattern pattern-3 is referred to by update program p3-to-p2; it cannot be deleted", "pattern", "delete", "pattern-3");
        await Deleted(server, "deleted update program p3-to-p2", "update-program.delete", "program", "delete", "p3-to-p2");

        await Deleted(server, "deleted pattern pattern-3", "pattern.delete", "pattern", "delete", "pattern-3");
        var gone = Assert.ThrowsAsync<OperatorApiException>(() => Get(api, "/api/v1/patterns/pattern-3"));
        Assert.That(gone!.Status, Is.EqualTo(404), "the API's GET finds it no more");
        Assert.That(await Get(api, "/api/v1/patterns"), Does.Not.Contain("pattern-3").And.Contain(DemoCatalogue.Pattern2));
    }

    [Test]
    public async Task Program_delete_is_refused_while_a_way_back_needs_the_program_and_goes_once_the_way_back_is_deleted()
    {
        await using var server = await TestServer.StartAsync();
        using var api = server.Operator();
        await RolloutCatalogue.AddPattern3Async(server, api);
        await RolloutCatalogue.AddWayBackAsync(server, api);

        await Refused(server, api, "409", "update program p2-to-p3 has a way back, p3-to-p2 (pattern-3 -> pattern-2)", "program", "delete", "p2-to-p3");
        await Refused(server, api, "404", "update program no-such-program does not exist", "program", "delete", "no-such-program");

        await Deleted(server, "deleted update program p3-to-p2", "update-program.delete", "program", "delete", "p3-to-p2");
        // a unit it is offered to, and a rollout that moves units with it, each hold it
        var mac = (await server.AddUnitsAsync(1))[0].Mac;
        using (var unit = await TransactionTests.UnitHttp(server, mac))
        using (var check = await unit.PostAsJsonAsync(Routes.VersionCheck, new VersionCheckRequest(
                   new Inventory(DemoCatalogue.HardwareVersion, DemoCatalogue.OsVersion, new Dictionary<string, string>(DemoCatalogue.Pattern2Applications)), new UnitLoad(0, 0), false, null),
                   ProtocolJson.Default.VersionCheckRequest))
        {
            Assert.That((await check.Content.ReadFromJsonAsync(ProtocolJson.Default.VersionCheckResponse))?.Update?.UpdateId, Is.EqualTo("p2-to-p3"), "offered: the unit is being updated by it");
        }
        await api.CallAsync<GroupView>(HttpMethod.Post, FleetApi.GroupsRoute, new NewGroup("on-2", null, new GroupFilter(Pattern: DemoCatalogue.Pattern2)), CancellationToken.None);
        await api.CallAsync<RolloutView>(HttpMethod.Post, RolloutsApi.Route, new NewRollout("fwd", "on-2", DemoCatalogue.Pattern2, "pattern-3", [new(Percent: 100)]), CancellationToken.None);
        await Refused(server, api, "409", "update program p2-to-p3 is used by rollout fwd, which is not finished", "program", "delete", "p2-to-p3");
        await api.CallAsync<RolloutView>(HttpMethod.Post, $"{RolloutsApi.Route}/fwd/abort", new AbortRequest(), CancellationToken.None);
        await Refused(server, api, "409", $"update program p2-to-p3 is needed by unit {mac} (on pattern-2", "program", "delete", "p2-to-p3");
        await api.SendJsonAsync(HttpMethod.Post, $"{Routes.Units}/{mac}/decommission", new DecommissionRequest("returned"), CancellationToken.None);
        await Deleted(server, "deleted update program p2-to-p3", "update-program.delete", "program", "delete", "p2-to-p3");
        var programs = await Get(api, "/api/v1/update-programs");
        Assert.That(programs, Does.Not.Contain("p2-to-p3").And.Not.Contain("p3-to-p2").And.Contain(DemoCatalogue.UpdateId), "the API lists the two no more");
        await Refused(server, api, "404", "update program p2-to-p3 does not exist", "program", "delete", "p2-to-p3");
    }

    [Test]
    public async Task Media_delete_takes_the_digest_in_any_case_and_refuses_one_not_registered()
    {
        await using var server = await TestServer.StartAsync();
        using var api = server.Operator();
        await api.SendJsonAsync(HttpMethod.Post, Routes.Media, new MediaRegistration(Digest, "field kit"), CancellationToken.None);
        var unknown = new string('f', 64);

        await Refused(server, api, "404", $"medium {unknown} is not registered", "media", "delete", unknown);

        await Deleted(server, $"deleted medium {Digest}: units presenting it are now told it is not genuine", "media.delete", "media", "delete", Digest.ToUpperInvariant());
        Assert.That(await Get(api, Routes.Media), Is.EqualTo("[]"), "the API lists it no more");
        var (exit, output, err) = await Tsunagu(server, "media", "list");
        Assert.That(exit, Is.Zero, err);
        Assert.That(output, Does.Contain("0 medium/media"));
        await Refused(server, api, "404", $"medium {Digest} is not registered", "media", "delete", Digest);
    }

    /// <summary>
    /// Ids and digests the server's grammar refuses are refused by the command before it connects: the server given is a
    /// port nothing listens on (and no certificate is given), so a command that tried a request would fail otherwise.
    /// </summary>
    [TestCase("--app: required", "software", "delete", "--app", "has space", "--version", "1.0.0")]
    [TestCase("--version: required", "software", "delete", "--app", "vcp", "--version", "1.0.0/../2")]
    [TestCase("patch: required", "patch", "delete", "semi;colon")]
    [TestCase("pattern: required", "pattern", "delete", "..")]
    [TestCase("pattern: required", "pattern", "delete", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa")]
    [TestCase("program: required", "program", "delete", "quote'd")]
    [TestCase("program: required", "program", "delete", "")]
    [TestCase("digest: 'nope' is not a SHA-256 in hex", "media", "delete", "nope")]
    [TestCase("is not a SHA-256 in hex", "media", "delete", "gggggggggggggggggggggggggggggggggggggggggggggggggggggggggggggggg")]
    [TestCase("is not a SHA-256 in hex", "media", "delete", "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcde")]
    public async Task An_argument_the_servers_grammar_refuses_is_refused_before_any_request(string expected, params string[] args)
    {
        var (exit, output, err) = await Tsunagu(null, [.. args, "--server", $"https://127.0.0.1:{TestServer.FreePort()}/"]);
        Assert.Multiple(() =>
        {
            Assert.That(exit, Is.EqualTo(1), err);
            Assert.That(err, Does.StartWith("error: ").And.Contain(expected).And.Not.Contain("no answer from the server"));
            Assert.That(output, Is.Empty);
        });
    }
}
