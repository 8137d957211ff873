using System.CommandLine;
using System.Net;
using System.Net.Http.Json;
using System.Security.Cryptography;
using Microsoft.Extensions.DependencyInjection;
using Tsunagu.Cli;
using Tsunagu.Demo;
using Tsunagu.Firmware.Storage;
using Tsunagu.Firmware.Supervision;
using Tsunagu.Firmware.Updates;
using Tsunagu.Protocol;
using Tsunagu.Protocol.Bundles;
using Tsunagu.Server.Data;

namespace Tsunagu.IntegrationTests;

/// <summary>Signed bundles over the real server: refusals, resume with range requests, and the CLI's verify.</summary>
[NonParallelizable]
public class BundleUpdateTests
{
    private static async Task<string> ArtifactPathAsync(TestServer server)
    {
        var program = (await server.Store.Catalogue.GetUpdateProgramAsync(DemoCatalogue.UpdateId))!;
        return server.App.Services.GetRequiredService<ArtifactStore>().PathOf(program.ArtifactSha256)!;
    }

    [Test]
    public async Task A_unit_that_does_not_trust_the_signing_key_refuses_the_bundle_and_stays_on_pattern_1()
    {
        await using var server = await TestServer.StartAsync();
        using var stranger = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var identity = server.Identity(1) with { ReleasePublicKeys = [ReleaseKeys.PublicKeyBase64(stranger)] };
        using (var client = server.Operator()) { await client.RegisterAsync(TestServer.Registration(identity), CancellationToken.None); }
        var unit = await server.Fleet.AddUnitAsync(identity, CancellationToken.None);
        server.Fleet.Start(unit);
        await server.WaitReadyAsync(unit);

        Assert.That(server.ChangesOf(unit.Mac).Any(c => c.From == StateId.Update && c.Outcome == Outcome.Failure), Is.True);
        Assert.That(new AppStore(unit.Hardware.Data.Root).Current(), Is.EqualTo(DemoCatalogue.FactoryApplications));
        var row = (await server.Store.Units.GetUnitAsync(unit.Mac))!;
        Assert.That(row.Pattern, Is.EqualTo(DemoCatalogue.Pattern1));
        Assert.That(row.LastError, Does.Contain("signature:").And.Contain("not a trusted release key"), "the failure report names the check");
    }

    [Test]
    public async Task A_bundle_tampered_with_on_the_server_is_refused_while_it_streams()
    {
        await using var server = await TestServer.StartAsync();
        var path = await ArtifactPathAsync(server);
        var bytes = await File.ReadAllBytesAsync(path);
        bytes[^700] ^= 0x01; // inside the last payload
        await File.WriteAllBytesAsync(path, bytes);
        var unit = (await server.AddUnitsAsync(1))[0];
        server.Fleet.Start(unit);
        await server.WaitReadyAsync(unit);

        Assert.That(new AppStore(unit.Hardware.Data.Root).Current(), Is.EqualTo(DemoCatalogue.FactoryApplications));
        Assert.That((await server.Store.Units.GetUnitAsync(unit.Mac))!.LastError, Does.Contain("payload-digest:"));
    }

    [Test]
    public async Task An_interrupted_download_resumes_from_the_real_server_with_a_range_request()
    {
        await using var server = await TestServer.StartAsync();
        var artifact = await File.ReadAllBytesAsync(await ArtifactPathAsync(server));
        var program = (await server.Store.Catalogue.GetUpdateProgramAsync(DemoCatalogue.UpdateId))!;
        var unit = (await server.AddUnitsAsync(1))[0];
        // the unit lost power earlier in the middle of this download: the journal and the first 1500 bytes are on data
        var work = Path.Combine(unit.Hardware.Data.Root, "tmp", DemoCatalogue.UpdateId);
        Directory.CreateDirectory(work);
        await File.WriteAllBytesAsync(Path.Combine(work, BundleInstaller.BundleFile), artifact[..1500]);
        using (var store = StateStore.Open(unit.Hardware.Data.Root))
        {
            var offer = new UpdateOffer(program.Id, program.FromPattern, program.ToPattern, (int)program.Importance,
                $"{Routes.Artifacts}/{program.ArtifactSha256}", program.ArtifactSha256, program.ArtifactSize);
            store.Set(StateKeys.PendingUpdate, new PendingUpdate(program.Id, PendingUpdate.Downloading, null, 1, offer, Entries: 0), FirmwareJson.Default.PendingUpdate);
        }
        server.Fleet.Start(unit);
        await server.WaitReadyAsync(unit);

        Assert.That(server.Log, Has.Some.Contains($"resuming at byte 1500 of {artifact.Length}"));
        Assert.That(new AppStore(unit.Hardware.Data.Root).Current(), Is.EqualTo(DemoCatalogue.Pattern2Applications));
        Assert.That((await server.Store.Units.GetUnitAsync(unit.Mac))!.Pattern, Is.EqualTo(DemoCatalogue.Pattern2));
    }

    private static async Task<(int Code, string Out, string Error)> CliAsync(params string[] args)
    {
        var root = new RootCommand("test") { BundleCommands.Create() };
        var output = new StringWriter();
        var error = new StringWriter();
        var code = await root.Parse(args).InvokeAsync(new InvocationConfiguration { Output = output, Error = error }, CancellationToken.None);
        return (code, output.ToString(), error.ToString());
    }

    [Test]
    public async Task Cli_verify_exits_0_on_the_demo_bundle_and_non_zero_naming_the_failed_check()
    {
        await using var server = await TestServer.StartAsync();
        var dir = Path.Combine(server.Root, "cli");
        Directory.CreateDirectory(dir);
        var bundle = Path.Combine(dir, "demo.tsb");
        File.Copy(await ArtifactPathAsync(server), bundle);
        var pub = Path.Combine(dir, "release.pub");
        await File.WriteAllTextAsync(pub, ReleaseKeys.PublicKeyBase64(server.ReleaseKey));
        using var stranger = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var strangerPub = Path.Combine(dir, "stranger.pub");
        await File.WriteAllTextAsync(strangerPub, stranger.ExportSubjectPublicKeyInfoPem());

        var ok = await CliAsync("bundle", "verify", bundle, "--key", pub, "--board", "simulated", "--from-pattern", DemoCatalogue.Pattern1);
        Assert.That((ok.Code, ok.Out), Is.EqualTo((BundleCommands.Ok, $"OK: bundle {DemoCatalogue.UpdateId} version 1 signed by {ReleaseKeys.KeyId(server.ReleaseKey)}; 2 payload(s), {new FileInfo(bundle).Length} bytes verified\n")));

        var cases = new (string[] Args, string Check)[]
        {
            (["--key", strangerPub], "signature"),
            (["--key", pub, "--from-pattern", DemoCatalogue.Pattern2], "from-pattern"),
            (["--key", pub, "--board", "rpi4"], "board"),
            (["--key", pub, "--installed-version", "1"], "version"),
            (["--key", pub, "--at", "2100-01-01T00:00:00Z"], "expiry"),
        };
        foreach (var (extra, check) in cases)
        {
            var r = await CliAsync(["bundle", "verify", bundle, .. extra]);
            Assert.That(r.Code, Is.EqualTo(BundleCommands.CheckFailed), check);
            Assert.That(r.Error, Does.StartWith($"bundle verify: FAILED {check}:"), check);
        }
        var bytes = await File.ReadAllBytesAsync(bundle);
        bytes[^100] ^= 0x01;
        await File.WriteAllBytesAsync(bundle, bytes);
        var tampered = await CliAsync("bundle", "verify", bundle, "--key", pub);
        Assert.That(tampered.Code, Is.EqualTo(BundleCommands.CheckFailed));
        Assert.That(tampered.Error, Does.StartWith("bundle verify: FAILED payload-digest:"));
        var missing = await CliAsync("bundle", "verify", Path.Combine(dir, "nothing.tsb"), "--key", pub);
        Assert.That(missing.Code, Is.EqualTo(BundleCommands.UsageError));
    }

    [Test]
    public async Task Cli_create_carries_signature_databases_named_as_their_files_and_refuses_other_names()
    {
        var dir = Path.Combine(Path.GetTempPath(), "tsunagu-cli-sigs-" + Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(dir);
        try
        {
            var database = Path.Combine(dir, "daily-7.hdb");
            await File.WriteAllTextAsync(database, "44d88612fea8a8f36de82e1278abb02f:68:Test.Eicar\n");
            string[] common = ["--id", "sigs-7", "--version", "7", "--from", "pattern-2", "--to", "pattern-3", "--board", "simulated", "--hardware", "r1", "--os", "os 1", "--importance", "5"];
            var bundle = Path.Combine(dir, "sigs.tsb");
            var created = await CliAsync(["bundle", "create", "--out", bundle, .. common, "--signatures", database]);
            Assert.That(created.Code, Is.Zero, created.Error);
            await using (var file = File.OpenRead(bundle))
            {
                var header = await BundleFormat.ReadHeaderAsync(file, CancellationToken.None);
                var manifest = System.Text.Json.JsonSerializer.Deserialize(header.ManifestBytes, BundleJson.Default.BundleManifest)!;
                Assert.That(manifest.Problems(), Is.Empty);
                Assert.That(manifest.Payloads.Select(p => (p.Name, p.Kind, p.Size)), Is.EqualTo(new[] { ("daily-7.hdb", PayloadKinds.Signatures, new FileInfo(database).Length) }));
                Assert.That(manifest.Steps, Is.EqualTo(new[] { new BundleStep(StepActions.InstallSignatures, "daily-7.hdb") }));
            }

            foreach (var bad in new[] { "Daily.HDB", "daily.conf", "-x.ndb" })
            {
                var path = Path.Combine(dir, bad);
                await File.WriteAllTextAsync(path, "x\n");
                var refused = await CliAsync(["bundle", "create", "--out", Path.Combine(dir, "bad.tsb"), .. common, "--signatures", path]);
                Assert.That(refused.Code, Is.EqualTo(BundleCommands.UsageError), bad);
                Assert.That(refused.Error, Does.Contain("is not a database file name"), bad);
                Assert.That(File.Exists(Path.Combine(dir, "bad.tsb")), Is.False, "nothing written");
            }
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    [Test]
    public async Task Cli_create_sign_inspect_verify_round_trip_is_installable_by_a_unit()
    {
        await using var server = await TestServer.StartAsync();
        var dir = Path.Combine(server.Root, "cli");
        var tree = Path.Combine(dir, "tree");
        Directory.CreateDirectory(tree);
        await File.WriteAllTextAsync(Path.Combine(tree, "VERSION"), "firewall 9.0.0\n");
        var keyFile = Path.Combine(dir, "release.key");
        Assert.That((await CliAsync("bundle", "keygen", "--out", keyFile)).Code, Is.Zero);
        var bundle = Path.Combine(dir, "b.tsb");
        var created = await CliAsync("bundle", "create", "--out", bundle, "--id", "p2-to-p3", "--version", "2", "--from", DemoCatalogue.Pattern2,
            "--to", "pattern-3", "--board", "simulated", "--hardware", DemoCatalogue.HardwareVersion, "--os", DemoCatalogue.OsVersion, "--app", $"firewall=9.0.0={tree}");
        Assert.That(created.Code, Is.Zero, created.Error);
        var unsigned = await CliAsync("bundle", "verify", bundle, "--key", keyFile + ".pub");
        Assert.That(unsigned.Error, Does.StartWith("bundle verify: FAILED signature: the bundle is not signed"));
        Assert.That((await CliAsync("bundle", "sign", bundle, "--key", keyFile)).Code, Is.Zero);
        var inspect = await CliAsync("bundle", "inspect", bundle);
        Assert.That(inspect.Out, Does.Contain("pattern-2 -> pattern-3").And.Contain("firewall 9.0.0").And.Contain("signatures"));
        Assert.That((await CliAsync("bundle", "verify", bundle, "--key", keyFile + ".pub", "--from-pattern", DemoCatalogue.Pattern2)).Code, Is.Zero);
    }
}

/// <summary>Installed applications damaged while the unit is off (patent 0040), with the real server.</summary>
[NonParallelizable]
public class AppIntegrityTests
{
    [Test]
    public async Task An_application_damaged_while_the_unit_is_off_is_fetched_again_from_the_host_and_a_factory_one_copied_from_the_prom()
    {
        await using var server = await TestServer.StartAsync();
        var unit = (await server.AddUnitsAsync(1))[0];
        server.Fleet.Start(unit);
        await server.WaitReadyAsync(unit);
        await server.Fleet.PowerOffAsync(unit);

        var apps = new AppStore(unit.Hardware.Data.Root);
        var (updated, updatedVersion) = DemoCatalogue.Pattern2Applications.First(a => DemoCatalogue.FactoryApplications.GetValueOrDefault(a.Key) != a.Value);
        var (factory, factoryVersion) = DemoCatalogue.Pattern2Applications.First(a => DemoCatalogue.FactoryApplications.GetValueOrDefault(a.Key) == a.Value);
        Assert.That(apps.ReadSeal(updated, updatedVersion), Is.Not.Null, "an application from a bundle keeps its signed manifest");
        var updatedTree = AppIntegrity.DescribeTree(apps.TreePath(updated, updatedVersion));
        var factoryTree = AppIntegrity.DescribeTree(apps.TreePath(factory, factoryVersion));
        await File.WriteAllTextAsync(Path.Combine(apps.TreePath(updated, updatedVersion), updatedTree[0].Path), "damaged on the flash");
        await File.AppendAllTextAsync(Path.Combine(apps.TreePath(factory, factoryVersion), factoryTree[0].Path), "damaged");

        server.Changes.Clear();
        var logBefore = server.Log.Count;
        server.Fleet.Start(unit);
        await server.WaitReadyAsync(unit);

        Assert.That(AppIntegrity.DescribeTree(apps.TreePath(updated, updatedVersion)), Is.EqualTo(updatedTree), "fetched again from the host");
        Assert.That(AppIntegrity.DescribeTree(apps.TreePath(factory, factoryVersion)), Is.EqualTo(factoryTree), "copied from the PROM again");
        var log = server.Log.Skip(logBefore).ToList();
        Assert.That(log, Has.One.Contains($"{updated} {updatedVersion} fetched again from the host and restored"));
        Assert.That(log, Has.One.Contains($"factory {factory} {factoryVersion} was damaged"));
        Assert.That(server.ChainOf(unit.Mac), Does.Not.Contain(StateId.Update), "no update ran: only the damaged payload's bytes were fetched");
        Assert.That(apps.Current(), Is.EqualTo(DemoCatalogue.Pattern2Applications));
        var row = (await server.Store.Units.GetUnitAsync(unit.Mac))!;
        Assert.That((row.State, row.Pattern), Is.EqualTo(("Ready", DemoCatalogue.Pattern2)));

        // intact now: the next boot finds nothing to fetch
        await server.Fleet.PowerOffAsync(unit);
        var logAgain = server.Log.Count;
        server.Fleet.Start(unit);
        await server.WaitReadyAsync(unit, readyCount: 2);
        Assert.That(server.Log.Skip(logAgain), Has.None.Contains("damaged"));
    }
}

/// <summary>An OS slot refused by dm-verity at boot, as the unit's ready report tells the host.</summary>
[NonParallelizable]
public class BootProblemReportTests
{
    [SetUp]
    public void UseDatabase() => TestServer.DatabaseKind.Value = "sqlite";

    [Test]
    public async Task A_boot_problem_becomes_the_units_last_error_and_a_failed_history_entry_and_a_malformed_one_is_refused_changing_nothing()
    {
        await using var server = await TestServer.StartAsync();
        var mac = (await server.AddUnitsAsync(1))[0].Mac;
        using var http = await VpnKeyTests.UnitHttp(server, mac);
        var before = HostileInputTests.Snapshot(server);
        foreach (var hostile in new[] { "", "   ", "slot b\nprimary=a", "slot b\u2028primary=a", "bell\a", new string('x', ReadyReport.MaxBootProblemLength + 1) })
        {
            using var refused = await http.PostAsJsonAsync(Routes.Ready, new ReadyReport(VpnKeyTests.Factory(), null, "203.0.113.7", BootProblem: hostile), ProtocolJson.Default.ReadyReport);
            var body = await refused.Content.ReadAsStringAsync();
            Assert.That(refused.StatusCode, Is.EqualTo(HttpStatusCode.BadRequest), body);
            Assert.That(body, Does.Contain("bootProblem"));
            Assert.That(HostileInputTests.Snapshot(server), Is.EqualTo(before), "refused, but the database changed");
        }
        var problem = ReadyState.BootProblem([Tsunagu.Hal.BootSlot.B])!;
        using (var accepted = await http.PostAsJsonAsync(Routes.Ready, new ReadyReport(VpnKeyTests.Factory(), null, "203.0.113.7", BootProblem: problem), ProtocolJson.Default.ReadyReport))
        {
            Assert.That(accepted.StatusCode, Is.EqualTo(HttpStatusCode.OK), await accepted.Content.ReadAsStringAsync());
        }
        Assert.That((await server.Store.Units.GetUnitAsync(mac))!.LastError, Is.EqualTo(problem));
        Assert.That((await server.Store.History.ListUnitEventsAsync(mac)).Where(e => e.Failed == 1).Select(e => e.Detail), Has.One.EqualTo($"boot: {problem}"));
    }
}
