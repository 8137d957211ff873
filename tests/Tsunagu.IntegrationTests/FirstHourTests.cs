using System.Diagnostics;
using System.Net;
using System.Net.Http.Json;
using System.Net.Sockets;
using System.Text;
using System.Text.Json;
using System.Text.RegularExpressions;
using Tsunagu.Protocol;
using Tsunagu.Server.Apis;

namespace Tsunagu.IntegrationTests;

/// <summary>
/// What a newcomer types in the first hour, as the README says it: the demo, the `tsunagu` launcher, the README's
/// commands and examples, `make lab`'s checks and the image build's tools. Each refusal is one line and changes nothing.
/// </summary>
[NonParallelizable]
public partial class FirstHourTests
{
    private static readonly TimeSpan CommandTimeout = TimeSpan.FromSeconds(120);

    [SetUp]
    public void SetUp() => TestServer.DatabaseKind.Value = "sqlite";

    private static string RepositoryRoot()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
        {
            if (File.Exists(Path.Combine(dir.FullName, "Tsunagu.slnx"))) { return dir.FullName; }
        }
        throw new DirectoryNotFoundException($"no Tsunagu.slnx above {AppContext.BaseDirectory}");
    }

    /// <summary>The build configuration of these tests: the launcher runs the CLI built in the same one.</summary>
    private static string Configuration => AppContext.BaseDirectory.Contains($"{Path.DirectorySeparatorChar}Debug{Path.DirectorySeparatorChar}", StringComparison.Ordinal) ? "Debug" : "Release";

    private static ProcessStartInfo Start(string file, string workingDirectory, IEnumerable<string> args, IReadOnlyDictionary<string, string?>? environment = null)
    {
        var start = new ProcessStartInfo(file) { RedirectStandardOutput = true, RedirectStandardError = true, WorkingDirectory = workingDirectory };
        foreach (var a in args) { start.ArgumentList.Add(a); }
        foreach (var name in new[] { "TSUNAGU_SERVER", "TSUNAGU_SERVER_CERT", "TSUNAGU_OPERATOR", "TSUNAGU_OPERATOR_PASSWORD", "PORT", "MQTT_PORT" })
        {
            start.Environment.Remove(name);
        }
        start.Environment["CONFIGURATION"] = Configuration;
        foreach (var (name, value) in environment ?? new Dictionary<string, string?>())
        {
            if (value is null) { start.Environment.Remove(name); } else { start.Environment[name] = value; }
        }
        return start;
    }

    private static async Task<(int Exit, string Out, string Err)> RunAsync(ProcessStartInfo start)
    {
        using var p = Process.Start(start)!;
        var stdout = p.StandardOutput.ReadToEndAsync();
        var stderr = p.StandardError.ReadToEndAsync();
        try
        {
            await p.WaitForExitAsync().WaitAsync(CommandTimeout);
        }
        catch (TimeoutException)
        {
            p.Kill(entireProcessTree: true);
            throw new TimeoutException($"{start.FileName} {string.Join(' ', start.ArgumentList)} did not end within {CommandTimeout}");
        }
        return (p.ExitCode, await stdout, await stderr);
    }

    private static Task<(int Exit, string Out, string Err)> Cli(string workingDirectory, IReadOnlyDictionary<string, string?>? environment, params string[] args) =>
        RunAsync(Start(Path.Combine(RepositoryRoot(), "tools", "tsunagu"), workingDirectory, args, environment));

    private static Dictionary<string, string> Snapshot(string directory) =>
        Directory.Exists(directory)
            ? Directory.EnumerateFiles(directory, "*", SearchOption.AllDirectories).ToDictionary(f => Path.GetRelativePath(directory, f), f => Convert.ToHexString(File.ReadAllBytes(f)))
            : [];

    private static string[] Lines(string text) => text.Split('\n', StringSplitOptions.RemoveEmptyEntries);

    // ---- the demo ----------------------------------------------------------------------------------------------

    [Test]
    public async Task A_second_demo_on_a_port_in_use_refuses_in_one_line_naming_the_port_and_changes_nothing()
    {
        var dir = TempDirectories.Create("second-run");
        var data = Path.Combine(dir, "demo");
        Directory.CreateDirectory(Path.Combine(data, "server"));
        await File.WriteAllTextAsync(Path.Combine(data, "operator-password"), "the-first-runs-password\n");
        await File.WriteAllTextAsync(Path.Combine(data, "server", "tsunagu.db"), "the first run's database");
        var before = Snapshot(data);
        // the first run: something holds the port (deterministic, no race with a real server's start)
        using var first = new TcpListener(IPAddress.Loopback, 0);
        first.Start();
        var port = ((IPEndPoint)first.LocalEndpoint).Port;

        var (exit, output, error) = await Cli(dir, null, "demo", "--units", "0", "--port", port.ToString(), "--mqtt-port", TestServer.FreePort().ToString(), "--data", data);

        Assert.That(exit, Is.EqualTo(2), output + error);
        Assert.That(Lines(output + error), Has.Length.EqualTo(1), "one line, no stack trace");
        Assert.That(output, Does.StartWith("error: --port " + port).And.Contain("in use").And.Contain("nothing was changed"));
        Assert.That(Snapshot(data), Is.EqualTo(before), "the data directory (password, database) is untouched");
        Assert.That(Directory.GetDirectories(data), Is.EqualTo(new[] { Path.Combine(data, "server") }), "no keys, certificate or fleet were created");
    }

    [GeneratedRegex(@"^operator\s+operator / (\S+)", RegexOptions.Multiline)]
    private static partial Regex OperatorLine();

    [GeneratedRegex(@"^console\s+(https://\S+/console)\s", RegexOptions.Multiline)]
    private static partial Regex ConsoleLine();

    [GeneratedRegex(@"^portal\s+(https://\S+/portal)\s+\(log in as (\S+) / (\S+),", RegexOptions.Multiline)]
    private static partial Regex PortalLine();

    /// <summary>Starts the demo, reads its banner up to the fleet line, runs <paramref name="whileRunning"/>, stops it.</summary>
    private static async Task<string> DemoBannerAsync(string dir, string data, Func<string, Task>? whileRunning = null)
    {
        var start = Start(Path.Combine(RepositoryRoot(), "tools", "tsunagu"), dir,
            ["demo", "--units", "0", "--port", TestServer.FreePort().ToString(), "--mqtt-port", TestServer.FreePort().ToString(), "--data", data]);
        using var p = Process.Start(start)!;
        var stderr = p.StandardError.ReadToEndAsync();
        var banner = new StringBuilder();
        try
        {
            using var timeout = new CancellationTokenSource(CommandTimeout);
            while (await p.StandardOutput.ReadLineAsync(timeout.Token) is { } line)
            {
                banner.AppendLine(line);
                if (line.StartsWith("fleet", StringComparison.Ordinal)) { break; }
            }
            Assert.That(banner.ToString(), Does.Contain("fleet"), $"the demo did not start: {banner}{(p.HasExited ? await stderr : "")}");
            if (whileRunning is not null) { await whileRunning(banner.ToString()); }
        }
        finally
        {
            p.Kill(entireProcessTree: true);
            await p.WaitForExitAsync();
        }
        return banner.ToString();
    }

    [Test]
    public async Task The_demo_keeps_its_passwords_from_run_to_run_and_prints_a_subscriber_login_that_works()
    {
        var dir = TempDirectories.Create("demo-banner");
        var data = Path.Combine(dir, "demo");
        // a token file that is not one the demo writes (too short, a control character) is replaced, never used
        Directory.CreateDirectory(data);
        await File.WriteAllTextAsync(Path.Combine(data, "access-point-token"), "short\u0007\n");
        string? token = null;
        var first = await DemoBannerAsync(dir, data, async banner =>
        {
            var portal = PortalLine().Match(banner);
            Assert.That(portal.Success, Is.True, banner);
            Assert.That(ConsoleLine().Match(banner).Success, Is.True, banner);
            Assert.That(portal.Groups[2].Value, Is.EqualTo("subscriber1"));
            var url = portal.Groups[1].Value[..^"portal".Length];
            var pin = Tsunagu.Cli.Factory.OperatorClient.PinFromPemFile(Path.Combine(data, "server", "tls", "server.pem"));
            using var http = TestServer.PinnedHttp(url, pin);
            using var login = await http.PostAsJsonAsync("/api/v1/subscriber/token", new SubscriberLogin(portal.Groups[2].Value, portal.Groups[3].Value));
            Assert.That(login.StatusCode, Is.EqualTo(HttpStatusCode.OK), "the printed subscriber login works");
            using var wrong = await http.PostAsJsonAsync("/api/v1/subscriber/token", new SubscriberLogin(portal.Groups[2].Value, "not-the-password"));
            Assert.That(wrong.StatusCode, Is.Not.EqualTo(HttpStatusCode.OK));

            // the ISP lab's access point (make lab LAB=isp) asks with the token in the data directory
            token = (await File.ReadAllTextAsync(Path.Combine(data, "access-point-token"))).Trim();
            Assert.That(token, Does.Match("^[0-9A-F]{48}$"), "the bad token file was replaced");
            foreach (var (bearer, expected) in new[] { (token, HttpStatusCode.NotFound), ("not-the-token-" + new string('x', 32), HttpStatusCode.Unauthorized) })
            {
                using var lookup = new HttpRequestMessage(HttpMethod.Get, "/api/v1/access-point/accounts/0123456789ab");
                lookup.Headers.Authorization = new System.Net.Http.Headers.AuthenticationHeaderValue("Bearer", bearer);
                using var answer = await http.SendAsync(lookup);
                Assert.That(answer.StatusCode, Is.EqualTo(expected), "an unknown MAC with the token is 404, a wrong token 401");
            }
        });
        var second = await DemoBannerAsync(dir, data);
        Assert.That((await File.ReadAllTextAsync(Path.Combine(data, "access-point-token"))).Trim(), Is.EqualTo(token), "the token is kept from run to run");

        Assert.That(OperatorLine().Match(second).Groups[1].Value, Is.EqualTo(OperatorLine().Match(first).Groups[1].Value).And.Not.Empty,
            "the operator password is the same on the next run");
        Assert.That(PortalLine().Match(second).Groups[3].Value, Is.EqualTo(PortalLine().Match(first).Groups[3].Value), "so is the subscriber's");
        Assert.That((await File.ReadAllTextAsync(Path.Combine(data, "operator-password"))).Trim(), Is.EqualTo(OperatorLine().Match(second).Groups[1].Value));
    }

    // ---- the tsunagu command ---------------------------------------------------------------------------------

    [Test]
    public async Task The_launcher_runs_the_cli_and_follows_PORT_like_make_run()
    {
        await using var server = await TestServer.StartAsync();
        var port = new Uri(server.Url).Port;
        var environment = new Dictionary<string, string?>
        {
            ["PORT"] = port.ToString(), ["TSUNAGU_SERVER_CERT"] = server.CertificatePath, ["TSUNAGU_OPERATOR_PASSWORD"] = TestServer.Password,
        };
        var (exit, output, error) = await Cli(server.Root, environment, "units", "list");
        Assert.That(exit, Is.Zero, error);
        Assert.That(output, Does.Contain("unit(s)"));
    }

    [Test]
    public async Task With_no_server_the_cli_says_in_one_line_that_nothing_answers_on_the_port()
    {
        await using var server = await TestServer.StartAsync(); // only for a certificate to pin
        var port = TestServer.FreePort();
        var environment = new Dictionary<string, string?>
        {
            ["PORT"] = port.ToString(), ["TSUNAGU_SERVER_CERT"] = server.CertificatePath, ["TSUNAGU_OPERATOR_PASSWORD"] = TestServer.Password,
        };
        var watch = Stopwatch.StartNew();
        var (exit, output, error) = await Cli(server.Root, environment, "units", "list");
        Assert.That(exit, Is.EqualTo(1), output);
        Assert.That(Lines(error), Has.Length.EqualTo(1), error);
        Assert.That(error, Does.Contain("no answer from the server").And.Contain("Connection refused").And.Contain(port.ToString()));
        Assert.That(error, Does.Not.Contain("inner exception"));
        Assert.That(watch.Elapsed, Is.LessThan(TimeSpan.FromSeconds(60)), "bounded: no retries");
    }

    // ---- the README's commands and examples ----------------------------------------------------------------

    /// <summary>The README's commands of the `tsunagu` section that need no server, continuation lines joined.</summary>
    private static List<string> ReadmeCommands(Func<string, bool> which)
    {
        var readme = File.ReadAllText(Path.Combine(RepositoryRoot(), "README.md"));
        var section = readme[readme.IndexOf("### The `tsunagu` command", StringComparison.Ordinal)..];
        var block = section[(section.IndexOf("```sh\n", StringComparison.Ordinal) + 6)..];
        block = block[..block.IndexOf("```", StringComparison.Ordinal)];
        return block.Replace("\\\n", " ").Split('\n').Select(l => l.Trim()).Where(l => l.Length > 0 && !l.StartsWith('#') && which(l)).ToList();
    }

    [Test]
    public async Task The_readmes_bundle_commands_work_as_written_and_write_only_under_the_ignored_out_folder()
    {
        var dir = TempDirectories.Create("readme");
        Directory.CreateSymbolicLink(Path.Combine(dir, "examples"), Path.Combine(RepositoryRoot(), "examples"));
        var commands = ReadmeCommands(l => l.StartsWith("mkdir", StringComparison.Ordinal) || l.StartsWith("tsunagu bundle", StringComparison.Ordinal));
        Assert.That(commands, Has.Count.GreaterThanOrEqualTo(4), "keygen, create, sign, verify");
        var script = "set -euo pipefail\nexport PATH=\"" + Path.Combine(RepositoryRoot(), "tools") + ":$PATH\"\n" + string.Join('\n', commands) + "\n";

        var (exit, output, error) = await RunAsync(Start("bash", dir, ["-c", script]));

        Assert.That(exit, Is.Zero, $"{script}\n{output}\n{error}");
        Assert.That(Directory.EnumerateFileSystemEntries(dir).Select(Path.GetFileName).Order(), Is.EqualTo(new[] { "examples", "out" }),
            "the commands wrote nothing beside out/");
        Assert.That(File.Exists(Path.Combine(dir, "out", "b.tsb")) && File.Exists(Path.Combine(dir, "out", "release.key")), Is.True);
        Assert.That(File.ReadAllLines(Path.Combine(RepositoryRoot(), ".gitignore")), Does.Contain("out/"), "out/ is ignored by git");
        var written = ReadmeCommands(_ => true).SelectMany(l => Regex.Matches(l, @"--out (\S+)").Select(m => m.Groups[1].Value)).ToList();
        Assert.That(written, Is.Not.Empty);
        Assert.That(written, Has.All.StartsWith("out/"), "every file a README command writes goes to out/");
    }

    [TestCase("services.json", new[] { "nftables.nft", "dnsmasq.conf", "services.txt" })]
    [TestCase("services-every-service.json", new[] { "nftables.nft", "dnsmasq.conf", "wg0.conf", "squid.conf", "services.txt" })]
    public async Task The_examples_service_configurations_render_for_the_qemu_board(string example, string[] files)
    {
        var root = RepositoryRoot();
        var output = Path.Combine(TempDirectories.Create("render"), "render");
        var (exit, stdout, error) = await Cli(root, null, "services", "render", Path.Combine("examples", example), "--board", "qemu-x86_64", "--out", output);
        Assert.That(exit, Is.Zero, stdout + error);
        foreach (var f in files)
        {
            Assert.That(new FileInfo(Path.Combine(output, f)).Length, Is.GreaterThan(0), f);
        }
    }

    [Test]
    public async Task Services_render_reads_the_chosen_categories_lists_where_it_is_told_and_says_so_where_there_are_none()
    {
        var root = RepositoryRoot();
        var dir = TempDirectories.Create("render-categories");
        var config = JsonSerializer.Deserialize(await File.ReadAllTextAsync(Path.Combine(root, "examples", "services.json")), ProtocolJson.Default.ServiceConfiguration)!;
        config = config with { ContentFilter = config.ContentFilter with { Enabled = true, Categories = ["ads"] } };
        var configFile = Path.Combine(dir, "config.json");
        await File.WriteAllTextAsync(configFile, JsonSerializer.Serialize(config, ProtocolJson.Default.ServiceConfiguration));
        var lists = Path.Combine(dir, "lists");
        Directory.CreateDirectory(lists);
        await File.WriteAllTextAsync(Path.Combine(lists, "ads.domains"), "tracker.example\n");

        var (exit, stdout, error) = await Cli(root, null, "services", "render", configFile, "--board", "qemu-x86_64", "--out", Path.Combine(dir, "with"), "--filter-lists", lists);
        Assert.That(exit, Is.Zero, stdout + error);
        var with = await File.ReadAllTextAsync(Path.Combine(dir, "with", "dnsmasq.conf"));
        Assert.That(with, Does.Contain("# category ads: 1 domains\naddress=/tracker.example/\n"));

        // by default the unit's own folder under --data-dir: none here, so the category refuses nothing and says why
        (exit, stdout, error) = await Cli(root, null, "services", "render", configFile, "--board", "qemu-x86_64", "--out", Path.Combine(dir, "without"),
            "--data-dir", Path.Combine(dir, "data"));
        Assert.That(exit, Is.Zero, stdout + error);
        var without = await File.ReadAllTextAsync(Path.Combine(dir, "without", "dnsmasq.conf"));
        Assert.That(without, Does.Contain("# category ads: nothing refused: no list on this unit").And.Not.Contain("tracker.example"));
    }

    [Test]
    public void Every_file_the_readme_names_exists()
    {
        var root = RepositoryRoot();
        var readme = File.ReadAllText(Path.Combine(root, "README.md"));
        var named = Regex.Matches(readme, @"`((?:[\w.-]+/)+[\w.-]+\.(?:md|json|csv|sh|mk))`").Select(m => m.Groups[1].Value).Distinct().ToList();
        Assert.That(named, Does.Contain("docs/image.md").And.Contain("rootfs/README.md"));
        // paths from the repository's root (a name inside a sentence about one folder, e.g. `Qemu/qemu-run.sh`, is relative to it)
        var fromRoot = named.Where(n => n.Split('/')[0] is var top && top != ".tsunagu" && Directory.Exists(Path.Combine(root, top))).ToList();
        Assert.That(fromRoot, Has.Count.GreaterThan(5));
        Assert.That(fromRoot.Where(n => !File.Exists(Path.Combine(root, n))), Is.Empty);
    }

    // ---- make lab and make image ------------------------------------------------------------------------------

    /// <summary>The files `make run` leaves for `make lab`, for <paramref name="server"/>.</summary>
    private static async Task<string> DemoFilesAsync(TestServer server, string dir)
    {
        var demo = Path.Combine(dir, "demo");
        Directory.CreateDirectory(Path.Combine(demo, "server", "keys"));
        Directory.CreateDirectory(Path.Combine(demo, "server", "tls"));
        await File.WriteAllTextAsync(Path.Combine(demo, "operator-password"), TestServer.Password + "\n");
        await File.WriteAllTextAsync(Path.Combine(demo, "release.pub"), Tsunagu.Protocol.Bundles.ReleaseKeys.PublicKeyBase64(server.ReleaseKey) + "\n");
        File.Copy(Path.Combine(server.Root, "server", "keys", "unit.key"), Path.Combine(demo, "server", "keys", "unit.key"));
        File.Copy(server.CertificatePath, Path.Combine(demo, "server", "tls", "server.pem"));
        return demo;
    }

    private static Task<(int Exit, string Out, string Err)> LabAsync(string dir, string demo, int port)
    {
        var image = Path.Combine(dir, "image");
        Directory.CreateDirectory(image);
        File.WriteAllBytes(Path.Combine(image, "disk.img"), new byte[4096]);
        return RunAsync(Start("bash", dir, [Path.Combine(RepositoryRoot(), "tests", "Tsunagu.SystemTests", "Qemu", "lab.sh")], new Dictionary<string, string?>
        {
            ["CLI"] = Path.Combine(AppContext.BaseDirectory, "tsunagu.dll"), ["PORT"] = port.ToString(), ["DEMO"] = demo,
            ["IMAGE_DIR"] = image, ["LAB"] = Path.Combine(dir, "lab"),
        }));
    }

    [Test]
    public async Task Make_lab_with_no_server_stops_at_once_with_one_line_and_copies_nothing()
    {
        await using var server = await TestServer.StartAsync();
        var dir = TempDirectories.Create("lab-no-server");
        var demo = await DemoFilesAsync(server, dir);
        var port = TestServer.FreePort();
        var (exit, output, error) = await LabAsync(dir, demo, port);
        Assert.That(exit, Is.EqualTo(2), output + error);
        Assert.That(Lines(error), Has.Length.EqualTo(1), error);
        Assert.That(error, Does.Contain($"the server on https://127.0.0.1:{port}/ did not answer").And.Contain("Connection refused").And.Contain("make run"));
        Assert.That(Directory.Exists(Path.Combine(dir, "lab")), Is.False, "nothing copied");
    }

    [Test]
    public async Task Make_lab_against_a_server_without_the_image_catalogue_says_so_and_copies_nothing()
    {
        await using var server = await TestServer.StartAsync();
        var dir = TempDirectories.Create("lab-no-catalogue");
        var demo = await DemoFilesAsync(server, dir);
        var units = (await server.Store.Units.ListUnitsAsync()).Count;
        var (exit, output, error) = await LabAsync(dir, demo, new Uri(server.Url).Port);
        Assert.That(exit, Is.EqualTo(2), output + error);
        Assert.That(Lines(error), Has.Length.EqualTo(1), error);
        Assert.That(error, Does.Contain("no verified pattern qemu-2").And.Contain("make image").And.Contain("make run"));
        Assert.That(Directory.Exists(Path.Combine(dir, "lab")), Is.False, "nothing copied");
        Assert.That(await server.Store.Units.ListUnitsAsync(), Has.Count.EqualTo(units), "nothing registered");
    }

    /// <summary>Runs <paramref name="script"/> in bash after sourcing lab-unit.sh (what lab.sh and isp-lab.sh share) for unit <paramref name="mac"/>.</summary>
    private static Task<(int Exit, string Out, string Err)> LabUnitAsync(string dir, string demo, int port, string mac, string script) =>
        RunAsync(Start("bash", dir, ["-c", $"set -euo pipefail; . '{Path.Combine(RepositoryRoot(), "tests", "Tsunagu.SystemTests", "Qemu", "lab-unit.sh")}'; {script}"],
            new Dictionary<string, string?>
            {
                ["CLI"] = Path.Combine(AppContext.BaseDirectory, "tsunagu.dll"), ["PORT"] = port.ToString(System.Globalization.CultureInfo.InvariantCulture),
                ["DEMO"] = demo, ["IMAGE_DIR"] = Path.Combine(dir, "image"), ["MAC"] = mac, ["NAME"] = "lab", ["TARGET"] = "qemu-2",
            }));

    [Test]
    public async Task The_labs_reuse_a_burned_disk_only_for_a_unit_the_server_knows_and_never_burn_for_a_decommissioned_one()
    {
        await using var server = await TestServer.StartAsync();
        var dir = TempDirectories.Create("lab-unit");
        var demo = await DemoFilesAsync(server, dir);
        var port = new Uri(server.Url).Port;
        var units = await server.AddUnitsAsync(2);
        const string unknown = "02:00:5e:00:53:99";
        await server.Store.Lifecycle.DecommissionAsync(units[1].Mac, null, "operator", "returned");

        async Task<string> OnServer(string mac)
        {
            var (exit, output, error) = await LabUnitAsync(dir, demo, port, mac, "lab_unit_on_server");
            Assert.That(exit, Is.Zero, error);
            return output.Trim();
        }
        Assert.That(await OnServer(units[0].Mac), Is.EqualTo("known"));
        Assert.That(await OnServer(unknown), Is.EqualTo("unknown"), "a unit the server never registered (or whose data was removed)");
        Assert.That(await OnServer(units[1].Mac), Is.EqualTo("decommissioned"));

        // a server that does not answer is not "unknown" (which would replace a good disk): the lab stops, naming it
        using (var closed = new System.Net.Sockets.TcpListener(System.Net.IPAddress.Loopback, 0))
        {
            closed.Start();
            var closedPort = ((System.Net.IPEndPoint)closed.LocalEndpoint).Port;
            closed.Stop();
            var (downExit, downOut, downError) = await LabUnitAsync(dir, demo, closedPort, units[0].Mac, "lab_unit_on_server");
            Assert.That(downExit, Is.EqualTo(2), downOut + downError);
            Assert.That(downOut, Does.Not.Contain("unknown"), downError);
            Assert.That(downError, Does.Contain($"cannot ask the server on https://127.0.0.1:{closedPort}/ about unit {units[0].Mac}").And.Contain("nothing was changed"));
        }

        // a disk burned for a unit the server no longer knows is not reused: a new one is burned to replace it (here the
        // burn fails on the test's empty image, so the old disk stays as it was and no partial copy is left)
        var image = Path.Combine(dir, "image");
        Directory.CreateDirectory(image);
        await File.WriteAllBytesAsync(Path.Combine(image, "disk.img"), new byte[4096]);
        await File.WriteAllTextAsync(Path.Combine(image, "board.json"), """{"name":"qemu-x86_64"}""");
        var run = Path.Combine(dir, "run");
        Directory.CreateDirectory(run);
        await File.WriteAllTextAsync(Path.Combine(run, "disk.img"), "a disk burned for a unit of a server that was reset");
        var (burnExit, burnOut, burnError) = await LabUnitAsync(dir, demo, port, unknown, $"lab_unit_disk '{run}' --serial LAB-0001 --hardware qemu-r1");
        Assert.That(burnOut, Does.Contain($"the server does not know {unknown}").And.Not.Contain("reusing"), burnOut + burnError);
        Assert.That(burnExit, Is.Not.Zero, "the empty test image cannot be burned");
        Assert.That(await File.ReadAllTextAsync(Path.Combine(run, "disk.img")), Is.EqualTo("a disk burned for a unit of a server that was reset"),
            "a failed burn leaves the old disk as it was");
        Assert.That(File.Exists(Path.Combine(run, "disk.img.part")), Is.False, "no partial copy left");
        Assert.That(burnError, Does.Contain("was left as it was"), burnError);
        Assert.That(await server.Store.Units.GetUnitAsync(unknown), Is.Null, "nothing registered by a failed burn");

        // a decommissioned unit: refused before anything is copied or burned
        var (exit2, out2, error2) = await LabUnitAsync(dir, demo, port, units[1].Mac, $"lab_unit_disk '{Path.Combine(dir, "run2")}' --serial LAB-0002 --hardware qemu-r1");
        Assert.That(exit2, Is.EqualTo(2), out2 + error2);
        Assert.That(Lines(error2), Has.Length.EqualTo(1), error2);
        Assert.That(error2, Does.Contain($"unit {units[1].Mac} decommissioned").And.Contain("MAC="));
        Assert.That(Directory.Exists(Path.Combine(dir, "run2")), Is.False, "nothing copied");
    }

    [Test]
    public async Task The_image_build_without_jq_stops_and_names_jq()
    {
        // a PATH with every program of this one but jq
        var bin = TempDirectories.Create("no-jq");
        foreach (var dir in (Environment.GetEnvironmentVariable("PATH") ?? "").Split(':').Where(Directory.Exists))
        {
            foreach (var file in Directory.EnumerateFiles(dir))
            {
                var link = Path.Combine(bin, Path.GetFileName(file));
                if (Path.GetFileName(file) != "jq" && !File.Exists(link) && !Directory.Exists(link)) { File.CreateSymbolicLink(link, file); }
            }
        }
        var root = RepositoryRoot();
        var noJq = new Dictionary<string, string?> { ["PATH"] = bin };
        var (exit, output, error) = await RunAsync(Start("make", root, ["--no-print-directory", "-n", "-f", "image/image.mk", "BOARD=qemu-x86_64", "OUT=" + Path.Combine(bin, "out"), "config"], noJq));
        Assert.That(exit, Is.Not.Zero, output);
        Assert.That(error, Does.Contain("jq is not installed"));

        (exit, output, error) = await RunAsync(Start(Path.Combine(bin, "bash"), root, ["image/mkdisk.sh", "board/qemu-x86_64/board.json", Path.Combine(bin, "out"), "1.0"], noJq));
        Assert.That(exit, Is.Not.Zero, output);
        Assert.That(error, Does.Contain("jq is not installed").And.Not.Contain("partitions: missing"));
    }
}
