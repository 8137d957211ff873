using System.Diagnostics;
using Tsunagu.Cli.Factory;
using Tsunagu.Demo;
using Tsunagu.Hal;

namespace Tsunagu.IntegrationTests;

/// <summary>The `tsunagu` command as an operator runs it, against the real server.</summary>
[NonParallelizable]
public class CliTests
{
    [SetUp]
    public void SetUp() => TestServer.DatabaseKind.Value = "sqlite";

    internal static async Task<(int Exit, string Out, string Err)> Tsunagu(TestServer? server, params string[] args)
    {
        var start = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true };
        start.ArgumentList.Add(Path.Combine(AppContext.BaseDirectory, "tsunagu.dll"));
        foreach (var a in args) { start.ArgumentList.Add(a); }
        if (server is not null)
        {
            start.Environment["TSUNAGU_SERVER"] = server.Url;
            start.Environment["TSUNAGU_SERVER_CERT"] = server.CertificatePath;
        }
        start.Environment["TSUNAGU_OPERATOR_PASSWORD"] = TestServer.Password;
        using var p = Process.Start(start)!;
        var stdout = p.StandardOutput.ReadToEndAsync();
        var stderr = p.StandardError.ReadToEndAsync();
        await p.WaitForExitAsync().WaitAsync(TimeSpan.FromSeconds(60));
        return (p.ExitCode, await stdout, await stderr);
    }

    /// <summary>A folder for the command's files under the server's root, holding the server's unit key file.</summary>
    private static async Task<(string Dir, string Key)> UnitKeyFileAsync(TestServer server)
    {
        var dir = Path.Combine(server.Root, "cli");
        Directory.CreateDirectory(dir);
        var key = Path.Combine(dir, "unit.key");
        await File.WriteAllBytesAsync(key, server.UnitKey);
        return (dir, key);
    }

    [TestCase("--update-at-fault", "soon")]
    [TestCase("--update-at-fault", "-1")]
    [TestCase("--subscriber-from-fault", "1.5")]
    [TestCase("--subscriber-from-fault", "None")]
    public async Task Chaos_refuses_a_fault_number_that_is_not_one_before_it_starts_anything(string option, string value)
    {
        var data = Path.Combine(TempDirectories.Create("chaos-flags"), "run");
        var (exit, _, err) = await Tsunagu(null, "chaos", "--data", data, "--count", "1", option, value);
        Assert.Multiple(() =>
        {
            Assert.That(exit, Is.EqualTo(2), err);
            Assert.That(err, Does.Contain("take a fault number (0 or more) or 'none'").And.Contain(value));
            Assert.That(Directory.Exists(data), Is.False, "nothing was started or written");
        });
    }

    [Test]
    public async Task An_administrator_makes_accounts_with_roles_and_a_refused_role_gets_a_clear_error()
    {
        await using var server = await TestServer.StartAsync();
        var (exit, output, err) = await Tsunagu(server, "operator", "add", "night-shift", "--account-password", "a long night-shift password", "--role", "support");
        Assert.That(exit, Is.Zero, err);
        Assert.That(await server.Store.Accounts.GetOperatorRoleAsync("night-shift"), Is.EqualTo("support"));
        (exit, output, err) = await Tsunagu(server, "operator", "list");
        Assert.That(exit, Is.Zero, err);
        Assert.That(output, Does.Contain("\"night-shift\"").And.Contain("\"support\""));

        var before = (await server.Store.ListAuditAsync(1000)).Count;
        (exit, _, err) = await Tsunagu(server, "pattern", "retire", DemoCatalogue.Pattern1, "--operator", "night-shift", "--password", "a long night-shift password");
        Assert.That(exit, Is.EqualTo(1));
        Assert.That(err, Does.Contain("403 refused: your operator role does not allow this").And.Contain("the role support may not use this endpoint"));
        Assert.That((await server.Store.Catalogue.GetPatternAsync(DemoCatalogue.Pattern1))!.Status, Is.EqualTo(global::Tsunagu.Server.Data.PatternStatus.Verified));
        Assert.That(await server.Store.ListAuditAsync(1000), Has.Count.EqualTo(before), "the refusal wrote nothing");

        (exit, _, err) = await Tsunagu(server, "operator", "role", "night-shift", "release-manager");
        Assert.That(exit, Is.Zero, err);
        (exit, _, err) = await Tsunagu(server, "pattern", "retire", DemoCatalogue.Pattern1, "--operator", "night-shift", "--password", "a long night-shift password");
        Assert.That(exit, Is.Zero, err);
        (exit, _, err) = await Tsunagu(server, "operator", "role", DemoCatalogue.OperatorName, "auditor");
        Assert.That(exit, Is.EqualTo(1));
        Assert.That(err, Does.Contain("409").And.Contain("cannot change their own role"));
    }

    [Test]
    public async Task An_operator_runs_the_catalogue_and_the_fleet_from_the_command_line()
    {
        await using var server = await TestServer.StartAsync();
        var dir = Path.Combine(server.Root, "cli");
        Directory.CreateDirectory(dir);

        var (exit, _, err) = await Tsunagu(server, "software", "add", "--app", "vcp", "--version", "2.0.0", "--requires-hardware", "r1");
        Assert.That(exit, Is.Zero, err);
        (exit, var output, err) = await Tsunagu(server, "pattern", "create", "--id", "pattern-3", "--hardware", "r1", "--os", DemoCatalogue.OsVersion,
            "--apps", "cache-manager=1.0.0", "firewall=1.1.0", "vcp=2.0.0");
        Assert.That(exit, Is.Zero, err);
        Assert.That(output, Does.Contain("\"status\": \"draft\""));
        (exit, _, err) = await Tsunagu(server, "pattern", "create", "--id", "pattern-4", "--hardware", "r1", "--os", DemoCatalogue.OsVersion, "--apps", "vcp=7.0.0");
        Assert.That(exit, Is.EqualTo(1));
        Assert.That(err, Does.Contain("vcp 7.0.0 is not in the software catalogue"));
        (exit, output, err) = await Tsunagu(server, "pattern", "verify", "pattern-3");
        Assert.That(exit, Is.Zero, err);
        Assert.That(output, Does.Contain("\"status\": \"verified\""));

        var bundle = Path.Combine(dir, "p2-to-p3.tsb");
        await File.WriteAllBytesAsync(bundle, DemoCatalogue.BuildBundle("p2-to-p3", 2, DemoCatalogue.Pattern2, "pattern-3",
            new Dictionary<string, string> { ["vcp"] = "2.0.0" }, server.ReleaseKey, DateTimeOffset.UtcNow));
        (exit, output, err) = await Tsunagu(server, "program", "add", "--id", "p2-to-p3", "--from", DemoCatalogue.Pattern2, "--to", "pattern-3",
            "--importance", "4", "--bundle", bundle);
        Assert.That(exit, Is.Zero, err);
        Assert.That(err, Does.Contain("uploaded p2-to-p3.tsb"));
        Assert.That((await server.Store.Catalogue.FindUpdateProgramAsync(DemoCatalogue.Pattern2))!.Importance, Is.EqualTo(4));

        var csv = Path.Combine(dir, "units.csv");
        await File.WriteAllTextAsync(csv, "mac,serial,isp_method,isp_username,isp_password\n02:54:53:00:30:01,C1,pppoe,a@isp,pw\nbad,C2,dhcp,,\n");
        (exit, _, err) = await Tsunagu(server, "units", "register-csv", csv);
        Assert.That(exit, Is.EqualTo(1));
        Assert.That(err, Does.Contain("units.csv:3: mac: 'bad' is not a MAC address").And.Contain("nothing was registered"));
        await File.WriteAllTextAsync(csv, "mac,serial,isp_method,isp_username,isp_password\n02:54:53:00:30:01,C1,pppoe,a@isp,pw\n02:54:53:00:30:02,C2,dhcp,,\n");
        (exit, output, err) = await Tsunagu(server, "units", "register-csv", csv);
        Assert.That(exit, Is.Zero, err);
        Assert.That(output, Does.Contain("registered 2 unit(s)"));

        (exit, output, err) = await Tsunagu(server, "units", "list");
        Assert.That(exit, Is.Zero, err);
        Assert.That(output, Does.Contain("02:54:53:00:30:02").And.Contain("2 unit(s)"));
        (exit, output, _) = await Tsunagu(server, "units", "list", "--app", "vcp", "--version", "2.0.0");
        Assert.That(output, Does.Contain("0 unit(s)"), "no unit reported vcp 2.0.0 yet");

        (exit, _, err) = await Tsunagu(server, "policy", "set", "--low-window", "25-3");
        Assert.That(exit, Is.EqualTo(1));
        Assert.That(err, Does.Contain("lowWindowStartHour"));
        (exit, output, err) = await Tsunagu(server, "policy", "set", "--cpu", "0.3", "--maintenance-window", "1-2");
        Assert.That(exit, Is.Zero, err);
        Assert.That(output, Does.Contain("\"cpuThreshold\": 0.3").And.Contain("\"maintenanceStartHour\": 1"));

        (exit, output, err) = await Tsunagu(server, "audit", "--limit", "20");
        Assert.That(exit, Is.Zero, err);
        Assert.That(output, Does.Contain("units.register-bulk").And.Contain("update-program.add").And.Contain("settings.update-policy"));
        (exit, output, err) = await Tsunagu(server, "audit", "--action", "settings.update-policy", "--from", "2000-01-01T00:00Z");
        Assert.That(exit, Is.Zero, err);
        Assert.That(output, Does.Contain("settings.update-policy").And.Not.Contain("units.register-bulk"));
        (exit, _, err) = await Tsunagu(server, "audit", "--unit", "not-a-mac");
        Assert.That(exit, Is.EqualTo(1));
        Assert.That(err, Does.Contain("400").And.Contain("unit: a MAC address"));

        (exit, output, err) = await Tsunagu(server, "units", "list", "--server", server.Url);
        Assert.That(exit, Is.Zero, err);
        Assert.That(output, Does.Contain("2 unit(s)"));
        (exit, _, err) = await Tsunagu(server, "units", "list", "--server", "not a url");
        Assert.That(exit, Is.EqualTo(1));
        Assert.That(err, Does.Contain("--server 'not a url' must be an absolute https:// URL"));

        (exit, _, err) = await Tsunagu(server, "units", "list", "--password", "wrong");
        Assert.That(exit, Is.EqualTo(1));
        Assert.That(err, Does.Contain("401"));
    }

    [Test]
    public async Task An_operator_edits_decommissions_and_rotates_secrets_from_the_command_line_with_the_apis_rules()
    {
        await using var server = await TestServer.StartAsync();
        var mac = (await server.AddUnitsAsync(1))[0].Mac;
        var (exit, output, err) = await Tsunagu(server, "units", "record", mac);
        Assert.That(exit, Is.Zero, err);
        Assert.That(output, Does.Contain("\"revision\": 1").And.Not.Contain("secret"));
        (exit, _, err) = await Tsunagu(server, "units", "edit", mac, "--revision", "1", "--domain", "cli.example", "--isp-password", "cli-Pa55");
        Assert.That(exit, Is.Zero, err);
        (exit, _, err) = await Tsunagu(server, "units", "edit", mac, "--revision", "1", "--domain", "stale.example");
        Assert.That(exit, Is.EqualTo(1), "a stale edit is refused as by the API");
        Assert.That(err, Does.Contain("409"));
        (exit, _, err) = await Tsunagu(server, "units", "edit", mac, "--domain", "bad domain");
        Assert.That(exit, Is.EqualTo(1));
        Assert.That(err, Does.Contain("400").And.Contain("domain"));
        Assert.That((await server.Store.Units.GetUnitAsync(mac))!.Domain, Is.EqualTo("cli.example"), "refused edits changed nothing");
        (exit, output, err) = await Tsunagu(server, "units", "revisions", mac);
        Assert.That(exit, Is.Zero, err);
        Assert.That(output, Does.Contain("isp.password").And.Not.Contain("cli-Pa55"));
        (exit, output, err) = await Tsunagu(server, "secrets", "rotate");
        Assert.That(exit, Is.Zero, err);
        Assert.That(output, Does.Contain("1 row(s) resealed"));
        Assert.That(server.Store.Lifecycle.IspPasswordOf((await server.Store.Units.GetUnitAsync(mac))!), Is.EqualTo("cli-Pa55"));
        (exit, _, err) = await Tsunagu(server, "units", "decommission", mac, "--reason", "returned");
        Assert.That(exit, Is.Zero, err);
        Assert.That((await server.Store.Units.GetUnitAsync(mac))!.State, Is.EqualTo("Decommissioned"));
        (exit, _, err) = await Tsunagu(server, "units", "delete", mac);
        Assert.That(exit, Is.Zero, err);
        Assert.That(await server.Store.Units.GetUnitAsync(mac), Is.Null, "a row that never reached the server is deleted");
    }

    [Test]
    public async Task Unit_add_with_single_link_burns_variant_2_into_the_identity_which_an_identity_without_it_reads_as_off()
    {
        await using var server = await TestServer.StartAsync();
        var (dir, key) = await UnitKeyFileAsync(server);
        foreach (var (mac, singleLink) in new[] { ("02:54:53:00:32:01", true), ("02:54:53:00:32:02", false) })
        {
            var factory = Path.Combine(dir, mac.Replace(':', '-'));
            string[] args = ["unit", "add", "--mac", mac, "--serial", "ST-" + mac[^2..], "--unit-key", key, "--out", factory, "--isp-method", "dhcp"];
            var (exit, output, err) = await Tsunagu(server, singleLink ? [.. args, "--single-link"] : args);
            Assert.That(exit, Is.Zero, err);
            Assert.That(output, Does.Contain($"registered {mac}"));
            var identity = await new DirectoryFactoryPartition(factory).ReadIdentityAsync(CancellationToken.None);
            Assert.That(identity.Bootstrap.SingleLink, Is.EqualTo(singleLink), mac);
        }

        // an identity burned before the field existed has no singleLink: variant 1, as before
        var old = Path.Combine(dir, "02-54-53-00-32-01", DirectoryFactoryPartition.IdentityFile);
        var json = System.Text.Json.Nodes.JsonNode.Parse(await File.ReadAllTextAsync(old))!;
        Assert.That(json["bootstrap"]!.AsObject().Remove("singleLink"), Is.True, "the field as the identity names it");
        await File.WriteAllTextAsync(old, json.ToJsonString());
        var read = await new DirectoryFactoryPartition(Path.GetDirectoryName(old)!).ReadIdentityAsync(CancellationToken.None);
        Assert.That((read.Mac, read.Bootstrap.SingleLink), Is.EqualTo(("02:54:53:00:32:01", false)));
    }

    [Test]
    public async Task Factory_burn_reimage_writes_only_the_identity_of_a_unit_the_server_has_with_that_serial_and_hardware()
    {
        await using var server = await TestServer.StartAsync();
        var (dir, key) = await UnitKeyFileAsync(server);
        const string mac = "02:54:53:00:33:01";
        var image = FactoryImageTests.MakeDisk(dir, "prom", "factory", "data");
        string[] Burn(string m, string serial, string hardware, bool reimage = true) =>
            ["factory", "burn", "--image", image, "--mac", m, "--serial", serial, "--hardware", hardware, "--board", "qemu-x86_64",
             "--unit-key", key, "--provisional-method", "dhcp", "--isp-method", "dhcp", .. reimage ? new[] { "--reimage" } : []];
        var (exit, output, err) = await Tsunagu(server, Burn(mac, "ST-1", "r1", reimage: false));
        Assert.That(exit, Is.Zero, err);
        Assert.That(output, Does.Contain($"registered {mac} (ST-1)"));
        var burned = await GptImage.ReadFactoryAsync(image, CancellationToken.None);
        FactoryImageTests.Erase(image, "factory"); // a fresh image: what a technician burns again

        foreach (var (args, refusal) in new (string[], string)[]
                 {
                     (Burn("02:54:53:00:33:02", "ST-1", "r1"), "the server has no unit 02:54:53:00:33:02"),
                     (Burn(mac, "ST-9", "r1"), $"the server has {mac} as serial ST-1, hardware r1, not serial ST-9, hardware r1"),
                     (Burn(mac, "ST-1", "r2"), $"the server has {mac} as serial ST-1, hardware r1, not serial ST-1, hardware r2"),
                 })
        {
            var before = HostileInputTests.Snapshot(server);
            var bytes = await File.ReadAllBytesAsync(image);
            (exit, _, err) = await Tsunagu(server, args);
            Assert.That(exit, Is.EqualTo(1), refusal);
            Assert.That(err, Does.Contain(refusal).And.Contain("nothing was written"));
            Assert.That(await File.ReadAllBytesAsync(image), Is.EqualTo(bytes), $"{refusal}: the image changed");
            Assert.That(HostileInputTests.Snapshot(server), Is.EqualTo(before), $"{refusal}: the database changed");
        }

        var unchanged = HostileInputTests.Snapshot(server);
        (exit, output, err) = await Tsunagu(server, Burn(mac, "ST-1", "r1"));
        Assert.That(exit, Is.Zero, err);
        Assert.That(output, Does.Contain($"rewritten for {mac} (ST-1)").And.Contain("comes back as itself"));
        var rewritten = await GptImage.ReadFactoryAsync(image, CancellationToken.None);
        Assert.That((rewritten.Mac, rewritten.Serial, rewritten.UnitSecret), Is.EqualTo((burned.Mac, burned.Serial, burned.UnitSecret)), "the same identity, the same secret");
        Assert.That(HostileInputTests.Snapshot(server), Is.EqualTo(unchanged), "a reimage registers nothing");
    }

    [Test]
    public async Task An_operator_sets_a_static_wan_with_gateway_and_name_servers_on_unit_add_and_units_edit()
    {
        await using var server = await TestServer.StartAsync();
        var (dir, key) = await UnitKeyFileAsync(server);
        const string mac = "02:54:53:00:31:01";
        var factory = Path.Combine(dir, "factory");
        string[] Add(params string[] wan) =>
            ["unit", "add", "--mac", mac, "--serial", "ST-1", "--unit-key", key, "--out", factory, "--isp-method", "static", "--ip", "203.0.113.7/24", .. wan];

        foreach (var (wan, field) in new (string[], string)[]
                 {
                     (["--dns", "192.0.2.53"], "isp.gateway"),
                     (["--gateway", "203.0.113.1\n"], "isp.gateway"),
                     (["--gateway", "203.0.113.1", "--dns", "192.0.2.53\tnameserver"], "isp.dns"),
                     (["--gateway", "203.0.113.1", "--dns", "192.0.2.1,192.0.2.2", "--dns", "192.0.2.3,192.0.2.4"], "isp.dns"),
                 })
        {
            var before = HostileInputTests.Snapshot(server);
            var (refusedExit, _, refusedErr) = await Tsunagu(server, Add(wan));
            Assert.That(refusedExit, Is.EqualTo(1), string.Join(' ', wan));
            Assert.That(refusedErr, Does.Contain("400").And.Contain(field));
            Assert.That(HostileInputTests.Snapshot(server), Is.EqualTo(before), $"{string.Join(' ', wan)}: refused, but the database changed");
            Assert.That(Directory.Exists(factory), Is.False, "no factory identity for a refused registration");
        }

        var (exit, output, err) = await Tsunagu(server, Add("--gateway", "203.0.113.1", "--dns", "192.0.2.53", "--dns", "192.0.2.54"));
        Assert.That(exit, Is.Zero, err);
        Assert.That(output, Does.Contain($"registered {mac} (ST-1)"));
        var row = (await server.Store.Units.GetUnitAsync(mac))!;
        Assert.That((row.IspMethod, row.IpAddress, row.IspGateway, row.SettingsRevision), Is.EqualTo(("static", "203.0.113.7/24", "203.0.113.1", 1L)));
        Assert.That(row.DnsList, Is.EqualTo(new[] { "192.0.2.53", "192.0.2.54" }));

        (exit, _, err) = await Tsunagu(server, "units", "edit", mac, "--gateway", "203.0.113.254", "--dns", "198.51.100.53,198.51.100.54");
        Assert.That(exit, Is.Zero, err);
        row = (await server.Store.Units.GetUnitAsync(mac))!;
        Assert.That((row.IspGateway, row.IspDns, row.SettingsRevision), Is.EqualTo(("203.0.113.254", "198.51.100.53,198.51.100.54", 2L)), "the edit raises the settings revision");

        var beforeEdit = HostileInputTests.Snapshot(server);
        (exit, _, err) = await Tsunagu(server, "units", "edit", mac, "--gateway", "203.0.113.9\n");
        Assert.That(exit, Is.EqualTo(1));
        Assert.That(err, Does.Contain("400").And.Contain("isp.gateway"));
        (exit, _, err) = await Tsunagu(server, "units", "edit", mac, "--isp-method", "dhcp");
        Assert.That(exit, Is.EqualTo(1));
        Assert.That(err, Does.Contain("400").And.Contain("isp: gateway and dns belong to a static account"));
        Assert.That(HostileInputTests.Snapshot(server), Is.EqualTo(beforeEdit), "refused edits changed nothing");

        (exit, _, err) = await Tsunagu(server, "units", "edit", mac, "--dns", "");
        Assert.That(exit, Is.Zero, err);
        row = (await server.Store.Units.GetUnitAsync(mac))!;
        Assert.That((row.IspGateway, row.IspDns, row.SettingsRevision), Is.EqualTo(("203.0.113.254", (string?)null, 3L)), "--dns \"\" clears the name servers only");
        (exit, _, err) = await Tsunagu(server, "units", "edit", mac, "--isp-method", "dhcp", "--ip", "", "--gateway", "");
        Assert.That(exit, Is.Zero, err);
        row = (await server.Store.Units.GetUnitAsync(mac))!;
        Assert.That((row.IspMethod, row.IpAddress, row.IspGateway, row.IspDns, row.SettingsRevision), Is.EqualTo(("dhcp", (string?)null, (string?)null, (string?)null, 4L)));
    }

    [Test]
    public async Task Group_window_clears_only_when_told_to()
    {
        await using var server = await TestServer.StartAsync();
        var (exit, _, err) = await Tsunagu(server, "group", "create", "night", "--window", "mon-fri 01:00-05:00");
        Assert.That(exit, Is.Zero, err);
        var stored = (await server.Store.Fleet.GetGroupAsync("night"))!.MaintenanceWindow;
        Assert.That(stored, Is.Not.Null);
        var before = HostileInputTests.Snapshot(server);
        // before: `group window night` without a window sent {"window": null} and cleared it
        (exit, _, err) = await Tsunagu(server, "group", "window", "night");
        Assert.That(exit, Is.EqualTo(1));
        Assert.That(err, Does.Contain("--clear"));
        (exit, _, err) = await Tsunagu(server, "group", "window", "night", "01:00-02:00", "--clear");
        Assert.That(exit, Is.EqualTo(1));
        Assert.That(err, Does.Contain("not both"));
        Assert.That(HostileInputTests.Snapshot(server), Is.EqualTo(before), "a refused command changed nothing");
        Assert.That((await server.Store.Fleet.GetGroupAsync("night"))!.MaintenanceWindow, Is.EqualTo(stored));

        (exit, _, err) = await Tsunagu(server, "group", "window", "night", "--clear");
        Assert.That(exit, Is.Zero, err);
        Assert.That((await server.Store.Fleet.GetGroupAsync("night"))!.MaintenanceWindow, Is.Null);
    }

    [Test]
    public async Task Units_window_keeps_what_the_operator_did_not_give()
    {
        await using var server = await TestServer.StartAsync();
        var mac = (await server.AddUnitsAsync(1))[0].Mac;
        var (exit, _, err) = await Tsunagu(server, "units", "window", mac, "--start", "1", "--end", "5", "--time-zone", "Asia/Tokyo");
        Assert.That(exit, Is.Zero, err);

        (exit, _, err) = await Tsunagu(server, "units", "window", mac, "--time-zone", "Europe/Paris");
        Assert.That(exit, Is.Zero, err);
        var unit = (await server.Store.Units.GetUnitAsync(mac))!;
        Assert.That((unit.LowWindowStart, unit.LowWindowEnd, unit.TimeZone), Is.EqualTo(((long?)1, (long?)5, "Europe/Paris")), "a new zone alone keeps the window");

        (exit, _, err) = await Tsunagu(server, "units", "window", mac, "--start", "2", "--end", "3");
        Assert.That(exit, Is.Zero, err);
        unit = (await server.Store.Units.GetUnitAsync(mac))!;
        Assert.That((unit.LowWindowStart, unit.LowWindowEnd, unit.TimeZone), Is.EqualTo(((long?)2, (long?)3, "Europe/Paris")), "a new window alone keeps the zone");

        (exit, _, err) = await Tsunagu(server, "units", "window", mac, "--start", "2");
        Assert.That(exit, Is.EqualTo(1), "a start without an end is refused");
        Assert.That(err, Does.Contain("give both"));
        unit = (await server.Store.Units.GetUnitAsync(mac))!;
        Assert.That((unit.LowWindowStart, unit.LowWindowEnd, unit.TimeZone), Is.EqualTo(((long?)2, (long?)3, "Europe/Paris")), "the refusal changed nothing");

        // a maintenance window of its own replaces the hours; a new zone alone keeps it; hours replace it again
        (exit, _, err) = await Tsunagu(server, "units", "window", mac, "--maintenance-window", "Mon-Fri 01:00-05:00");
        Assert.That(exit, Is.Zero, err);
        unit = (await server.Store.Units.GetUnitAsync(mac))!;
        Assert.That((unit.LowWindowStart, unit.MaintenanceWindow, unit.TimeZone), Is.EqualTo(((long?)null, "mon,tue,wed,thu,fri 01:00-05:00", "Europe/Paris")));
        (exit, _, err) = await Tsunagu(server, "units", "window", mac, "--time-zone", "Asia/Tokyo");
        Assert.That(exit, Is.Zero, err);
        Assert.That((await server.Store.Units.GetUnitAsync(mac))!.MaintenanceWindow, Is.EqualTo("mon,tue,wed,thu,fri 01:00-05:00"), "a new zone alone keeps the window");
        (exit, _, err) = await Tsunagu(server, "units", "window", mac, "--maintenance-window", "mon 01:00-05:00", "--start", "1", "--end", "2");
        Assert.That(exit, Is.EqualTo(1), "hours and a window together are refused");
        Assert.That(err, Does.Contain("not both"));
        (exit, _, err) = await Tsunagu(server, "units", "window", mac, "--maintenance-window", "someday 01:00");
        Assert.That(exit, Is.EqualTo(1));
        Assert.That(err, Does.Contain("maintenanceWindow"));
        Assert.That((await server.Store.Units.GetUnitAsync(mac))!.MaintenanceWindow, Is.EqualTo("mon,tue,wed,thu,fri 01:00-05:00"), "the refusals changed nothing");
        (exit, _, err) = await Tsunagu(server, "units", "window", mac, "--maintenance-window", "none");
        Assert.That(exit, Is.Zero, err);
        unit = (await server.Store.Units.GetUnitAsync(mac))!;
        Assert.That((unit.MaintenanceWindow, unit.TimeZone), Is.EqualTo(((string?)null, "Asia/Tokyo")), "none clears the window, the zone stays");

        (exit, _, err) = await Tsunagu(server, "units", "window", mac, "--fleet");
        Assert.That(exit, Is.Zero, err);
        unit = (await server.Store.Units.GetUnitAsync(mac))!;
        Assert.That((unit.LowWindowStart, unit.LowWindowEnd, unit.TimeZone, unit.MaintenanceWindow), Is.EqualTo(((long?)null, (long?)null, (string?)null, (string?)null)));
    }

    [Test]
    public async Task Units_tag_group_and_rollout_commands_drive_the_api()
    {
        await using var server = await TestServer.StartAsync();
        var mac = (await server.AddUnitsAsync(1))[0].Mac;
        var (exit, _, err) = await Tsunagu(server, "units", "tag", mac, "--add", "lab", "region:kanto");
        Assert.That(exit, Is.Zero, err);
        (exit, _, err) = await Tsunagu(server, "units", "tag", mac, "--add", "beta", "--remove", "region:kanto");
        Assert.That(exit, Is.Zero, err);
        Assert.That(await server.Store.Fleet.GetTagsAsync(mac), Is.EqualTo(new[] { "beta", "lab" }), "the tags the unit had stay, the removed one goes");
        (exit, _, err) = await Tsunagu(server, "units", "tag", mac, "--add", "Bad Tag");
        Assert.That(exit, Is.EqualTo(1));
        Assert.That(err, Does.Contain("tags"));
        Assert.That(await server.Store.Fleet.GetTagsAsync(mac), Is.EqualTo(new[] { "beta", "lab" }), "the refusal changed nothing");
        var (_, tagged, _) = await Tsunagu(server, "units", "tagged", "lab");
        Assert.That(tagged, Does.Contain(mac));
        // the unit runs pattern 1 (as its checks would record it): the rollout's one member, in wave 1, never installing here
        await server.Store.Units.RecordInventoryAsync(mac, new Tsunagu.Protocol.Inventory(DemoCatalogue.HardwareVersion, DemoCatalogue.OsVersion, new Dictionary<string, string>()),
            DemoCatalogue.Pattern1, "Ready");

        (exit, _, err) = await Tsunagu(server, "group", "create", "lab", "--tag", "lab");
        Assert.That(exit, Is.Zero, err);
        var (_, groups, _) = await Tsunagu(server, "group", "list");
        Assert.That(groups, Does.Match("lab\\s+dynamic\\s+1 unit"));

        (exit, var created, err) = await Tsunagu(server, "rollout", "create", "r1", "--group", "lab", "--from", DemoCatalogue.Pattern1, "--to", DemoCatalogue.Pattern2,
            "--waves", "10%,90%", "--error", "5");
        Assert.That(exit, Is.Zero, err);
        Assert.That(created, Does.Contain("rollout r1: running").And.Contain("downloading"));
        (exit, _, err) = await Tsunagu(server, "rollout", "create", "r2", "--group", "lab", "--from", DemoCatalogue.Pattern1, "--to", DemoCatalogue.Pattern2, "--waves", "ten");
        Assert.That(exit, Is.EqualTo(1));
        Assert.That(err, Does.Contain("--waves"));
        (exit, _, err) = await Tsunagu(server, "rollout", "pause", "r1");
        Assert.That(exit, Is.Zero, err);
        Assert.That((await server.Store.Rollouts.GetRolloutAsync("r1"))!.State, Is.EqualTo("paused"));
        (exit, _, err) = await Tsunagu(server, "rollout", "resume", "r1");
        Assert.That(exit, Is.Zero, err);
        var (_, stopped, _) = await Tsunagu(server, "rollout", "stop");
        Assert.That(stopped, Does.Contain("paused: r1"));
        (exit, _, err) = await Tsunagu(server, "rollout", "abort", "r1");
        Assert.That(exit, Is.Zero, err);
        (exit, _, err) = await Tsunagu(server, "rollout", "resume", "r1");
        Assert.That(exit, Is.EqualTo(1), "an aborted rollout cannot resume");
        Assert.That(err, Does.Contain("409"));
        Assert.That((await server.Store.ListAuditAsync(100)).Where(a => a.Target == "r1").Select(a => a.Action).Reverse(),
            Is.EqualTo(new[] { "rollout.create", "rollout.pause", "rollout.resume", "rollout.emergency-stop", "rollout.abort" }));
    }

    [Test]
    public async Task A_rollouts_returns_page_through_the_api_with_a_next_link_and_the_cli_prints_every_one()
    {
        await using var server = await TestServer.StartAsync();
        var macs = (await server.AddUnitsAsync(3)).Select(u => u.Mac).Order(StringComparer.Ordinal).ToList();
        foreach (var mac in macs)
        {
            await server.Store.Fleet.SetTagsAsync(mac, ["lab"], new Tsunagu.Server.Data.AuditEntry("alice", "unit.tags", mac, "lab"));
            await server.Store.Units.RecordInventoryAsync(mac, new Tsunagu.Protocol.Inventory(DemoCatalogue.HardwareVersion, DemoCatalogue.OsVersion, new Dictionary<string, string>()),
                DemoCatalogue.Pattern1, "Ready");
        }
        Assert.That((await Tsunagu(server, "group", "create", "lab", "--tag", "lab")).Exit, Is.Zero);
        Assert.That((await Tsunagu(server, "rollout", "create", "r1", "--group", "lab", "--from", DemoCatalogue.Pattern1, "--to", DemoCatalogue.Pattern2, "--waves", "100%")).Exit, Is.Zero);
        Assert.That((await Tsunagu(server, "rollout", "abort", "r1")).Exit, Is.Zero);
        // the outcomes an abort with revert writes (here without units that installed anything)
        Assert.That(server.ExecuteSql($"UPDATE rollout_units SET returned = 'returning to {DemoCatalogue.Pattern1}' WHERE rollout = 'r1'"), Is.EqualTo(3));

        using var http = server.PinnedHttp();
        http.DefaultRequestHeaders.Authorization = new("Basic", Convert.ToBase64String(System.Text.Encoding.UTF8.GetBytes($"{DemoCatalogue.OperatorName}:{TestServer.Password}")));
        var first = await http.GetAsync("/api/v1/rollouts/r1/returns?limit=2");
        Assert.That((int)first.StatusCode, Is.EqualTo(200));
        Assert.That(Macs(await first.Content.ReadAsStringAsync()), Is.EqualTo(macs.Take(2)));
        var next = first.Headers.GetValues("Link").Single();
        Assert.That(next, Is.EqualTo($"</api/v1/rollouts/r1/returns?after={macs[1]}&limit=2>; rel=\"next\""));
        var second = await http.GetAsync(next[1..next.IndexOf('>', StringComparison.Ordinal)]);
        Assert.That(Macs(await second.Content.ReadAsStringAsync()), Is.EqualTo(macs.Skip(2)));
        Assert.That(second.Headers.Contains("Link"), Is.False, "a short page is the last");
        Assert.That(Macs(await http.GetStringAsync($"/api/v1/rollouts/r1/returns?after={macs[0].Replace(':', '-').ToUpperInvariant()}")), Is.EqualTo(macs.Skip(1)),
            "after reads any spelling of a MAC");
        Assert.That(Macs(await http.GetStringAsync("/api/v1/rollouts/r1/never-offered")), Is.Empty, "an aborted rollout offers nothing");
        foreach (var (query, field) in new[] { ("limit=0", "limit"), ("limit=1001", "limit"), ("limit=-1", "limit"), ("limit=2x", "limit"), ("after=zz", "after"), ("after=%0a", "after") })
        {
            var refused = await http.GetAsync($"/api/v1/rollouts/r1/returns?{query}");
            Assert.That((int)refused.StatusCode, Is.EqualTo(400), query);
            Assert.That(await refused.Content.ReadAsStringAsync(), Does.Contain($"\"{field}\""), query);
        }
        Assert.That((int)(await http.GetAsync("/api/v1/rollouts/r9/returns")).StatusCode, Is.EqualTo(404));

        var (exit, listed, err) = await Tsunagu(server, "rollout", "returns", "r1");
        Assert.That(exit, Is.Zero, err);
        Assert.That(listed.Split('\n', StringSplitOptions.RemoveEmptyEntries), Is.EqualTo(macs.Select(m => $"{m}  returning to {DemoCatalogue.Pattern1}")));
        var (_, shown, _) = await Tsunagu(server, "rollout", "show", "r1");
        Assert.That(shown, Does.Contain("returned by the abort: 3 unit(s): 3 returning, 0 returned, 0 cannot return, 0 ended by a new target"));

        // past one page of the CLI (the API's largest): 1,200 more outcomes (members' rows only; the list reads nothing else)
        // sort after the three units, so the CLI asks for a second page after the 1,000th MAC and prints every one once
        const int more = 1200;
        var extra = Enumerable.Range(0, more).Select(i => $"fe:00:00:00:{i / 256:x2}:{i % 256:x2}").ToList();
        Assert.That(server.ExecuteSql("INSERT INTO rollout_units (rollout, mac, wave, joined_at, returned) VALUES "
            + string.Join(", ", extra.Select(m => $"('r1', '{m}', 0, '2026-01-01T00:00:00.0000000+00:00', 'cannot return: no update program leads back')"))), Is.EqualTo(more));
        (exit, listed, err) = await Tsunagu(server, "rollout", "returns", "r1");
        Assert.That(exit, Is.Zero, err);
        var lines = listed.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.That(lines.Select(l => l.Split("  ")[0]), Is.EqualTo(macs.Concat(extra)), "every member once, in MAC order, across two pages");
        Assert.That(lines.Skip(3), Is.All.EndsWith("  cannot return: no update program leads back"));
        (_, shown, _) = await Tsunagu(server, "rollout", "show", "r1");
        Assert.That(shown, Does.Contain($"returned by the abort: {3 + more} unit(s): 3 returning, 0 returned, {more} cannot return, 0 ended by a new target"));
        var unlisted = 3 + more - global::Tsunagu.Server.Fleet.Rollouts.RolloutService.ListedMembers;
        Assert.That(shown, Does.Contain($"and {unlisted} more: tsunagu rollout returns r1"), "the view lists the first members only");

        static List<string> Macs(string json) =>
            [.. System.Text.Json.JsonDocument.Parse(json).RootElement.EnumerateArray().Select(e => e.GetProperty("mac").GetString()!)];
    }
}
