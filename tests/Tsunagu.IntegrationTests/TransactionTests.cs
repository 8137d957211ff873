using System.Net;
using System.Net.Http.Headers;
using System.Net.Http.Json;
using System.Text;
using Microsoft.Data.Sqlite;
using Microsoft.Extensions.DependencyInjection;
using Tsunagu.Demo;
using Tsunagu.Protocol;
using Tsunagu.Server.Apis;
using Tsunagu.Server.Catalogue;

namespace Tsunagu.IntegrationTests;

/// <summary>
/// A handler that writes several rows writes them in one transaction: a fault in the last write (injected with a
/// SQLite trigger that aborts it) leaves the database exactly as it was, never half of the change.
/// </summary>
[NonParallelizable]
public class TransactionTests
{
    [SetUp]
    public void SetUp() => TestServer.DatabaseKind.Value = "sqlite";

    /// <summary>Makes every insert into <paramref name="table"/> matching <paramref name="when"/> fail, as a full or broken store would.</summary>
    private static void InjectFault(TestServer server, string table, string when) =>
        Execute(server, $"CREATE TRIGGER injected_fault BEFORE INSERT ON {table} WHEN {when} BEGIN SELECT RAISE(ABORT, 'injected fault'); END");

    private static void RemoveFault(TestServer server) => Execute(server, "DROP TRIGGER injected_fault");

    private static void Execute(TestServer server, string sql)
    {
        using var c = new SqliteConnection(new SqliteConnectionStringBuilder
        {
            DataSource = Path.Combine(server.Root, "server", "tsunagu.db"), Pooling = false,
        }.ToString());
        c.Open();
        using var command = c.CreateCommand();
        command.CommandText = sql;
        command.ExecuteNonQuery();
    }

    /// <summary>A client holding a host token of unit <paramref name="mac"/>.</summary>
    internal static async Task<HttpClient> UnitHttp(TestServer server, string mac)
    {
        var http = server.PinnedHttp();
        var challenge = (await (await http.PostAsJsonAsync(Routes.HostChallenge, new ChallengeRequest(mac))).Content.ReadFromJsonAsync<ChallengeResponse>())!;
        var proof = UnitCredentials.ComputeProof(UnitCredentials.DeriveUnitSecret(server.UnitKey, mac), ProofPurpose.Host, mac, challenge.ChallengeId, challenge.Nonce);
        var session = await http.PostAsJsonAsync(Routes.HostSession, new SessionRequest(mac, challenge.ChallengeId, proof));
        Assert.That(session.StatusCode, Is.EqualTo(HttpStatusCode.OK));
        http.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", (await session.Content.ReadFromJsonAsync<SessionResponse>())!.Token);
        return http;
    }

    internal static Inventory Factory() =>
        new(DemoCatalogue.HardwareVersion, DemoCatalogue.OsVersion, DemoCatalogue.FactoryApplications.ToDictionary(a => a.Key, a => a.Value));

    [Test]
    public async Task A_configuration_acknowledgement_whose_history_entry_fails_changes_nothing()
    {
        await using var server = await TestServer.StartAsync();
        var mac = (await server.AddUnitsAsync(1))[0].Mac;
        using var http = await UnitHttp(server, mac);
        InjectFault(server, "unit_events", $"NEW.kind = '{Tsunagu.Server.Data.UnitEventKinds.Config}'");
        var before = HostileInputTests.Snapshot(server);
        using var response = await http.PostAsJsonAsync(Routes.ServiceConfigAck, new ServiceConfigAck(1, false, "dnsmasq refused it"), ProtocolJson.Default.ServiceConfigAck);
        Assert.That(response.IsSuccessStatusCode, Is.False, "the write failed");
        Assert.That(HostileInputTests.Snapshot(server), Is.EqualTo(before), "no status or error without the history entry");
        Assert.That((await server.Store.ServiceConfigs.ListUnitConfigsAsync(mac)).Single().Status, Is.EqualTo(Tsunagu.Server.Data.ConfigStatus.Provisional));
    }

    [Test]
    public async Task A_ready_report_whose_history_entry_fails_changes_nothing()
    {
        await using var server = await TestServer.StartAsync();
        var mac = (await server.AddUnitsAsync(1))[0].Mac;
        using var http = await UnitHttp(server, mac);
        InjectFault(server, "unit_events", $"NEW.kind = '{Tsunagu.Server.Data.UnitEventKinds.Ready}'");
        var before = HostileInputTests.Snapshot(server);
        using var response = await http.PostAsJsonAsync(Routes.Ready, new ReadyReport(Factory(), 1, "203.0.113.7"), ProtocolJson.Default.ReadyReport);
        Assert.That(response.IsSuccessStatusCode, Is.False, "the write failed");
        Assert.That(HostileInputTests.Snapshot(server), Is.EqualTo(before), "no inventory or address without the history entry");
    }

    [Test]
    public async Task A_named_service_configuration_whose_audit_entry_fails_is_not_stored()
    {
        await using var server = await TestServer.StartAsync();
        using var http = server.OperatorHttp();
        InjectFault(server, "audit", "NEW.action = 'service-config.put'");
        var before = HostileInputTests.Snapshot(server);
        using var response = await http.PutAsJsonAsync($"{Routes.Prefix}/service-configs/lab", DemoCatalogue.StandardServices, ProtocolJson.Default.ServiceConfiguration);
        Assert.That(response.IsSuccessStatusCode, Is.False, "the write failed");
        Assert.That(HostileInputTests.Snapshot(server), Is.EqualTo(before), "no configuration without its audit entry");
        Assert.That(await server.Store.ServiceConfigs.GetServiceConfigAsync("lab"), Is.Null);
    }

    [Test]
    public async Task A_unit_service_configuration_whose_audit_entry_fails_adds_no_revision()
    {
        await using var server = await TestServer.StartAsync();
        var mac = (await server.AddUnitsAsync(1))[0].Mac;
        using var http = server.OperatorHttp();
        var revisions = (await server.Store.ServiceConfigs.ListUnitConfigsAsync(mac)).Count;
        InjectFault(server, "audit", "NEW.action = 'unit.service-config'");
        var before = HostileInputTests.Snapshot(server);
        using var response = await http.PutAsJsonAsync($"{Routes.Units}/{mac}/service-config", DemoCatalogue.StandardServices, ProtocolJson.Default.ServiceConfiguration);
        Assert.That(response.IsSuccessStatusCode, Is.False, "the write failed");
        Assert.That(HostileInputTests.Snapshot(server), Is.EqualTo(before), "no revision without its audit entry");
        Assert.That(await server.Store.ServiceConfigs.ListUnitConfigsAsync(mac), Has.Count.EqualTo(revisions));
    }

    [Test]
    public async Task An_update_report_whose_history_entry_fails_records_nothing_of_it()
    {
        await using var server = await TestServer.StartAsync();
        var mac = (await server.AddUnitsAsync(1))[0].Mac;
        using var http = await UnitHttp(server, mac);
        var report = new UpdateReport(DemoCatalogue.UpdateId, false, "disk full while installing",
            Factory());

        InjectFault(server, "unit_events", $"NEW.kind = '{Tsunagu.Server.Data.UnitEventKinds.Update}'");
        var before = HostileInputTests.Snapshot(server);
        using var response = await http.PostAsJsonAsync(Routes.UpdateReport, report, ProtocolJson.Default.UpdateReport);
        Assert.That(response.IsSuccessStatusCode, Is.False, "the write failed");
        Assert.That(HostileInputTests.Snapshot(server), Is.EqualTo(before), "no report, inventory, error or audit entry without the history entry");
        Assert.That(await server.Store.History.ListUpdateReportsAsync(mac), Is.Empty);
        Assert.That((await server.Store.Units.GetUnitAsync(mac))!.LastError, Is.Null);
    }

    /// <summary>
    /// An operator's request whose audit entry fails: refused, and the database exactly as before; the same request
    /// without the fault succeeds (so the fault, not the request, was refused).
    /// </summary>
    private static async Task AssertAuditFaultChangesNothing(TestServer server, string action, Func<HttpClient, Task<HttpResponseMessage>> request, Func<Task> unchanged)
    {
        using var http = server.OperatorHttp();
        InjectFault(server, "audit", $"NEW.action = '{action}'");
        var before = HostileInputTests.Snapshot(server);
        using var response = await request(http);
        Assert.That(response.IsSuccessStatusCode, Is.False, "the write failed");
        Assert.That(HostileInputTests.Snapshot(server), Is.EqualTo(before), $"nothing of {action} without its audit entry");
        await unchanged();
        RemoveFault(server);
        using var again = await request(http);
        Assert.That(again.IsSuccessStatusCode, Is.True, $"without the fault the same request succeeds ({again.StatusCode})");
        InjectFault(server, "audit", $"NEW.action = '{action}'");
    }

    [Test]
    public async Task A_medium_whose_audit_entry_fails_is_not_registered()
    {
        await using var server = await TestServer.StartAsync();
        var digest = new string('a', 64);
        await AssertAuditFaultChangesNothing(server, "media.register", http => http.PostAsJsonAsync(Routes.Media, new MediaRegistration(digest, "lab stick")),
            async () =>
            {
                Assert.That(await server.Store.Media.GetMediumAsync(digest), Is.Null);
            });
    }

    [Test]
    public async Task A_contract_whose_audit_entry_fails_is_not_stored()
    {
        await using var server = await TestServer.StartAsync();
        await AssertAuditFaultChangesNothing(server, "contract.put", http =>
            http.PutAsJsonAsync($"{Routes.Prefix}/contracts/lab", new ContractRequest([ServiceConfigFields.All[0]])),
            async () =>
            {
                Assert.That(await server.Store.Accounts.GetContractAsync("lab"), Is.Null);
            });
    }

    [Test]
    public async Task An_update_policy_whose_audit_entry_fails_is_not_stored()
    {
        await using var server = await TestServer.StartAsync();
        var policy = await PolicySettings.GetAsync(server.Store);
        await AssertAuditFaultChangesNothing(server, "settings.update-policy", http =>
            http.PutAsJsonAsync($"{Routes.Prefix}/settings/update-policy", policy with { CpuThreshold = policy.CpuThreshold / 2 }, ProtocolJson.Default.UpdatePolicy),
            async () =>
            {
                Assert.That(await PolicySettings.GetAsync(server.Store), Is.EqualTo(policy));
            });
    }

    [Test]
    public async Task An_operator_whose_audit_entry_fails_is_not_created()
    {
        await using var server = await TestServer.StartAsync();
        await AssertAuditFaultChangesNothing(server, "operator.set", http =>
            http.PostAsJsonAsync($"{Routes.Prefix}/operators", new NewSubscriber("carol", "a long enough password")),
            async () =>
            {
                Assert.That(await server.Store.Accounts.GetOperatorHashAsync("carol"), Is.Null);
            });
    }

    [Test]
    public async Task A_subscriber_whose_audit_entry_fails_gets_neither_a_password_nor_a_contract()
    {
        await using var server = await TestServer.StartAsync();
        await server.Store.Accounts.UpsertContractAsync("lab", [ServiceConfigFields.All[0]]);
        await AssertAuditFaultChangesNothing(server, "subscriber.set", http =>
            http.PostAsJsonAsync($"{Routes.Prefix}/subscribers", new NewSubscriber("dave", "a long enough password", "lab")),
            async () =>
            {
                Assert.That(await server.Store.Accounts.GetSubscriberHashAsync("dave"), Is.Null);
                Assert.That(await server.Store.Accounts.GetSubscriberContractAsync("dave"), Is.Null);
            });
    }

    [Test]
    public async Task Software_whose_audit_entry_fails_is_not_catalogued()
    {
        await using var server = await TestServer.StartAsync();
        await AssertAuditFaultChangesNothing(server, "software.add", http =>
            http.PostAsJsonAsync($"{Routes.Prefix}/software", new SoftwareRequest("vcp", "9.9.9", "vcp", DemoCatalogue.HardwareVersion, null)),
            async () =>
            {
                Assert.That(await server.Store.Catalogue.GetSoftwareAsync("vcp", "9.9.9"), Is.Null);
            });
    }

    [Test]
    public async Task A_patch_whose_audit_entry_fails_is_not_catalogued()
    {
        await using var server = await TestServer.StartAsync();
        await AssertAuditFaultChangesNothing(server, "patch.add", http =>
            http.PostAsJsonAsync($"{Routes.Prefix}/patches", new PatchRequest("vcp-fix-1", "vcp fix", "1.0.1", "vcp", 3, null, null)),
            async () =>
            {
                Assert.That(await server.Store.Catalogue.ListPatchesAsync(), Is.Empty);
            });
    }

    /// <summary>An artifact upload's body.</summary>
    private static ByteArrayContent Octets(byte[] bytes)
    {
        var content = new ByteArrayContent(bytes);
        content.Headers.ContentType = new MediaTypeHeaderValue("application/octet-stream");
        return content;
    }

    private static NewPattern DraftPattern() => new("pattern-3", "candidate", DemoCatalogue.HardwareVersion, DemoCatalogue.OsVersion,
        new Dictionary<string, string> { ["cache-manager"] = "1.0.0", ["firewall"] = "1.0.0", ["vcp"] = "1.2.0" });

    [Test]
    public async Task A_pattern_whose_audit_entry_fails_is_not_created()
    {
        await using var server = await TestServer.StartAsync();
        var stamp = (await server.Store.Catalogue.CatalogueAsync()).Stamp;
        await AssertAuditFaultChangesNothing(server, "pattern.create", http => http.PostAsJsonAsync($"{Routes.Prefix}/patterns", DraftPattern()),
            async () =>
            {
                Assert.That(await server.Store.Catalogue.GetPatternAsync("pattern-3"), Is.Null);
                Assert.That((await server.Store.Catalogue.CatalogueAsync()).Stamp, Is.EqualTo(stamp), "the catalogue did not move");
            });
    }

    [Test]
    public async Task A_pattern_verification_whose_audit_entry_fails_leaves_a_draft()
    {
        await using var server = await TestServer.StartAsync();
        using (var http = server.OperatorHttp())
        {
            using var created = await http.PostAsJsonAsync($"{Routes.Prefix}/patterns", DraftPattern());
            Assert.That(created.StatusCode, Is.EqualTo(HttpStatusCode.Created));
        }
        await AssertAuditFaultChangesNothing(server, "pattern.verify", http => http.PostAsync($"{Routes.Prefix}/patterns/pattern-3/verify", new StringContent("{}", Encoding.UTF8, "application/json")),
            async () =>
            {
                Assert.That((await server.Store.Catalogue.GetPatternAsync("pattern-3"))!.Status, Is.EqualTo(Tsunagu.Server.Data.PatternStatus.Draft));
            });
    }

    [Test]
    public async Task A_target_pattern_whose_audit_entry_fails_is_not_set()
    {
        await using var server = await TestServer.StartAsync();
        var mac = (await server.AddUnitsAsync(1))[0].Mac;
        var target = (await server.Store.Units.GetUnitAsync(mac))!.TargetPattern;
        var next = target == DemoCatalogue.Pattern2 ? DemoCatalogue.Pattern1 : DemoCatalogue.Pattern2;
        await AssertAuditFaultChangesNothing(server, "unit.target-pattern", http =>
            http.PutAsJsonAsync($"{Routes.Units}/{mac}/target-pattern", new TargetPatternRequest(next)),
            async () =>
            {
                Assert.That((await server.Store.Units.GetUnitAsync(mac))!.TargetPattern, Is.EqualTo(target));
            });
    }

    [Test]
    public async Task An_update_program_whose_audit_entry_fails_is_not_added()
    {
        await using var server = await TestServer.StartAsync();
        var bundle = DemoCatalogue.BuildBundle("p2-to-p1", 1, DemoCatalogue.Pattern2, DemoCatalogue.Pattern1,
            DemoCatalogue.FactoryApplications.Where(a => DemoCatalogue.Pattern2Applications[a.Key] != a.Value).ToDictionary(), server.ReleaseKey, DateTimeOffset.UtcNow);
        string sha;
        using (var http = server.OperatorHttp())
        {
            using var uploaded = await http.PostAsync($"{Routes.Prefix}/artifacts", Octets(bundle));
            Assert.That(uploaded.StatusCode, Is.EqualTo(HttpStatusCode.Created));
            sha = (await uploaded.Content.ReadFromJsonAsync<ArtifactView>())!.Sha256;
        }
        await AssertAuditFaultChangesNothing(server, "update-program.add", http =>
            http.PostAsJsonAsync($"{Routes.Prefix}/update-programs", new NewUpdateProgram("p2-to-p1", DemoCatalogue.Pattern2, DemoCatalogue.Pattern1, 3, 1, sha)),
            async () =>
            {
                Assert.That(await server.Store.Catalogue.GetUpdateProgramAsync("p2-to-p1"), Is.Null);
            });
    }

    [Test]
    public async Task A_console_upload_whose_upload_audit_entry_fails_adds_no_program_and_keeps_no_bundle()
    {
        await using var server = await TestServer.StartAsync();
        var artifacts = server.App.Services.GetRequiredService<Tsunagu.Server.Data.ArtifactStore>();
        var files = Directory.GetFiles(artifacts.Directory).Order(StringComparer.Ordinal).ToList();
        var bundle = DemoCatalogue.BuildBundle("p2-back", 1, DemoCatalogue.Pattern2, DemoCatalogue.Pattern1,
            DemoCatalogue.FactoryApplications.Where(a => DemoCatalogue.Pattern2Applications[a.Key] != a.Value).ToDictionary(), server.ReleaseKey, DateTimeOffset.UtcNow);
        using var session = await RoleTests.ConsoleSession(server, DemoCatalogue.OperatorName, TestServer.Password);
        async Task<HttpResponseMessage> Upload()
        {
            var file = new ByteArrayContent(bundle);
            file.Headers.ContentType = new MediaTypeHeaderValue("application/octet-stream");
            using var form = new MultipartFormDataContent
            {
                { new StringContent(await RoleTests.Csrf(session)), "__csrf" }, { new StringContent("p2-back"), "id" },
                { new StringContent(DemoCatalogue.Pattern2), "fromPattern" }, { new StringContent(DemoCatalogue.Pattern1), "toPattern" },
                { new StringContent("3"), "importance" }, { new StringContent("1"), "priority" }, { file, "bundle", "update.tsb" },
            };
            return await session.PostAsync("/console/programs", form);
        }

        // the second of the two audit entries fails: the program's own entry and row were already written in the same transaction
        InjectFault(server, "audit", "NEW.action = 'artifact.upload'");
        var before = HostileInputTests.Snapshot(server);
        using (var failed = await Upload())
        {
            var page = failed.StatusCode == HttpStatusCode.Redirect ? await session.GetStringAsync("/console/programs") : "";
            Assert.That(failed.IsSuccessStatusCode || failed.StatusCode == HttpStatusCode.Redirect, Is.False, $"the write failed ({failed.StatusCode} {failed.Headers.Location}): {page}");
        }
        Assert.That(await server.Store.Catalogue.GetUpdateProgramAsync("p2-back"), Is.Null, "no program without the upload's audit entry");
        Assert.That((await server.Store.ListAuditAsync(20)).Where(a => a.Action is "update-program.add" or "artifact.upload"), Is.Empty, "no audit entry of the failed upload");
        Assert.That(HostileInputTests.Snapshot(server), Is.EqualTo(before), "nothing of the upload in the database");
        Assert.That(Directory.GetFiles(artifacts.Directory).Order(StringComparer.Ordinal), Is.EqualTo(files), "no bundle file left");

        RemoveFault(server);
        using var again = await Upload();
        Assert.That(again.StatusCode, Is.EqualTo(HttpStatusCode.Redirect), "without the fault the same upload succeeds");
        Assert.That(await server.Store.Catalogue.GetUpdateProgramAsync("p2-back"), Is.Not.Null);
        Assert.That((await server.Store.ListAuditAsync(20)).Count(a => a.Action is "update-program.add" or "artifact.upload"), Is.EqualTo(2));
    }

    [Test]
    public async Task An_artifact_whose_audit_entry_fails_is_not_kept()
    {
        await using var server = await TestServer.StartAsync();
        var artifacts = server.App.Services.GetRequiredService<Tsunagu.Server.Data.ArtifactStore>();
        var files = Directory.GetFiles(artifacts.Directory).Order(StringComparer.Ordinal).ToList();
        var content = Encoding.UTF8.GetBytes("an artifact whose upload is never recorded");
        await AssertAuditFaultChangesNothing(server, "artifact.upload", http => http.PostAsync($"{Routes.Prefix}/artifacts", Octets(content)),
            () =>
            {
                Assert.That(artifacts.PathOf(Convert.ToHexStringLower(System.Security.Cryptography.SHA256.HashData(content))), Is.Null, "no artifact without its audit entry");
                Assert.That(Directory.GetFiles(artifacts.Directory).Order(StringComparer.Ordinal), Is.EqualTo(files), "nothing left of the upload");
                return Task.CompletedTask;
            });
    }

    [Test]
    public async Task Software_whose_insert_fails_writes_no_audit_entry()
    {
        await using var server = await TestServer.StartAsync();
        using var http = server.OperatorHttp();
        InjectFault(server, "software", "NEW.version = '9.9.9'");
        var before = HostileInputTests.Snapshot(server);
        using var response = await http.PostAsJsonAsync($"{Routes.Prefix}/software", new SoftwareRequest("vcp", "9.9.9", "vcp", null, null));
        Assert.That(response.IsSuccessStatusCode, Is.False, "the write failed");
        Assert.That(HostileInputTests.Snapshot(server), Is.EqualTo(before), "no audit entry for software that was not catalogued");
    }
}
