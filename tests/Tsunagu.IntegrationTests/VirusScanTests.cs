using System.Net;
using System.Security.Cryptography;
using System.Text;
using Tsunagu.Firmware.Services;

namespace Tsunagu.IntegrationTests;

/// <summary>
/// Virus checking with the real daemons as the unit renders them: clamd with a small signature database built here (no
/// network: the EICAR test file by its MD5 and a marker of our own), c-icap's virus_scan service asking clamd, and squid
/// sending every download to c-icap. The EICAR file is refused with c-icap's page, a clean file passes; new signatures
/// (a database file added, then clamd's RELOAD, nothing restarted) refuse a file that passed before.
/// </summary>
[NonParallelizable]
public class VirusScanTests
{
    /// <summary>The EICAR anti-virus test file: harmless, and every engine's agreed test of detection.</summary>
    private static readonly byte[] Eicar = Encoding.ASCII.GetBytes(@"X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*");
    private static readonly byte[] Marker = Encoding.ASCII.GetBytes("a file that only the new signatures know: TSUNAGU-NEW-SIGNATURE-TEST-MARKER, nothing else");

    [Test]
    public async Task Eicar_is_refused_a_clean_file_passes_and_new_signatures_refuse_what_passed_before()
    {
        var root = TempDirectories.Create("virus");
        using var origin = new Origin();
        var clean = RandomNumberGenerator.GetBytes(300_000);
        // every answer is no-store: each download is checked again, none served from the cache
        const string noStore = "Cache-Control: no-store\r\n";
        origin.Static["/clean.bin"] = (noStore, clean);
        origin.Static["/eicar.com"] = (noStore, Eicar);
        origin.Static["/marker.txt"] = (noStore, Marker);
        using var squid = await SquidUnderTest.StartAsync(root, SquidUnderTest.Configuration(virusScan: true), HostVirusScan.Board(),
            db => File.WriteAllText(Path.Combine(db, "tsunagu.hdb"), $"{Convert.ToHexStringLower(MD5.HashData(Eicar))}:{Eicar.Length}:Tsunagu.Test.Eicar\n"));
        using var http = new HttpClient(new SocketsHttpHandler { Proxy = new WebProxy($"http://127.0.0.1:{squid.Port}"), UseProxy = true }) { Timeout = TimeSpan.FromSeconds(60) };
        try
        {
            var rss = IdleRssKilobytes(squid.Clamd!.Id);
            TestContext.Out.WriteLine($"clamd RSS at idle with the test database: {rss} kB");

            Assert.That(await http.GetByteArrayAsync(origin.Url("/clean.bin")), Is.EqualTo(clean), "a clean download passes unchanged");
            await AssertRefusedAsync(http, origin.Url("/eicar.com"), "Tsunagu.Test.Eicar");
            Assert.That(await http.GetByteArrayAsync(origin.Url("/marker.txt")), Is.EqualTo(Marker), "the old signatures do not know the marker");

            // new signatures, as a signature update installs them: a file in the database directory, then RELOAD
            var log = Path.Combine(squid.Environment.RunDirectory, "clamd.log");
            var reloads = Reloads(log);
            await File.WriteAllTextAsync(Path.Combine(squid.Environment.SignatureDirectory, "tsunagu-2.ndb"),
                $"Tsunagu.Test.Marker:0:*:{Convert.ToHexStringLower(Encoding.ASCII.GetBytes("TSUNAGU-NEW-SIGNATURE-TEST-MARKER"))}\n");
            await ClamdControl.ReloadAsync(squid.Environment.ClamdSocket, CancellationToken.None);
            await WaitForAsync(() => Reloads(log) > reloads, "clamd to finish loading the new database", log);
            await AssertRefusedAsync(http, origin.Url("/marker.txt"), "Tsunagu.Test.Marker");
            Assert.That(await http.GetByteArrayAsync(origin.Url("/clean.bin")), Is.EqualTo(clean), "clean downloads still pass");

        }
        finally
        {
            await squid.StopAsync();
            Directory.Delete(root, recursive: true);
        }
    }

    // a board with memory for two databases: clamd's concurrent reload is the check (a set it cannot load keeps the previous
    // one in force, and the installer takes the database out again); a smaller one: clamscan loads the new database alone first
    [TestCase(1024, "clamd failed to reload its database")]
    [TestCase(256, "does not load on its own")]
    public async Task A_signature_database_is_installed_and_loaded_and_a_broken_one_is_refused_with_the_old_signatures_kept(int memoryMegabytes, string refusal)
    {
        var root = TempDirectories.Create("signatures");
        using var origin = new Origin();
        var clean = RandomNumberGenerator.GetBytes(100_000);
        const string noStore = "Cache-Control: no-store\r\n";
        origin.Static["/clean.bin"] = (noStore, clean);
        origin.Static["/eicar.com"] = (noStore, Eicar);
        origin.Static["/marker.txt"] = (noStore, Marker);
        using var squid = await SquidUnderTest.StartAsync(root, SquidUnderTest.Configuration(virusScan: true), HostVirusScan.Board(memoryMegabytes),
            db => File.WriteAllText(Path.Combine(db, "tsunagu.hdb"), HostVirusScan.EicarHashSignature("Tsunagu.Test.Eicar")));
        using var http = new HttpClient(new SocketsHttpHandler { Proxy = new WebProxy($"http://127.0.0.1:{squid.Port}"), UseProxy = true }) { Timeout = TimeSpan.FromSeconds(60) };
        var log = new List<string>();
        var installer = new SignatureInstaller(squid.Environment, new Tsunagu.Hal.Linux.ProcessCommandRunner(), TimeProvider.System, log.Add);
        var directory = squid.Environment.SignatureDirectory;
        string[] Listing() => [.. Directory.GetFiles(directory).Select(Path.GetFileName).Order(StringComparer.Ordinal)!];
        try
        {
            Assert.That(await http.GetByteArrayAsync(origin.Url("/marker.txt")), Is.EqualTo(Marker), "the first signatures do not know the marker");

            // a scan just before, as any download makes: its clamd worker thread stays alive, idle, for clamd's IdleTimeout,
            // and a reload without a second database first waits for every worker to end (the default of 30 s held it that long)
            using var idle = new System.Net.Sockets.Socket(System.Net.Sockets.AddressFamily.Unix, System.Net.Sockets.SocketType.Stream, System.Net.Sockets.ProtocolType.Unspecified);
            await idle.ConnectAsync(new System.Net.Sockets.UnixDomainSocketEndPoint(squid.Environment.ClamdSocket));
            await idle.SendAsync("zINSTREAM\0\0\0\0\u0005hello\0\0\0\0"u8.ToArray().AsMemory());
            var scanned = new byte[64];
            Assert.That(Encoding.ASCII.GetString(scanned, 0, await idle.ReceiveAsync(scanned.AsMemory())), Is.EqualTo("stream: OK\0"), "the scan before the install");

            // new signatures: installed into the directory on data and loaded by clamd, which was never restarted
            var clock = System.Diagnostics.Stopwatch.StartNew();
            await installer.InstallAsync("tsunagu-2.ndb", new MemoryStream(Encoding.ASCII.GetBytes(HostVirusScan.MarkerSignature("Tsunagu.Test.Marker", "TSUNAGU-NEW-SIGNATURE-TEST-MARKER"))), CancellationToken.None);
            TestContext.Out.WriteLine($"new signatures checked, installed and loaded in {clock.ElapsedMilliseconds} ms");
            // at most the idle time and the load (a wait of clamd's default 30 s fails this)
            Assert.That(clock.Elapsed, Is.LessThan(TimeSpan.FromSeconds(ServiceRenderer.ClamdIdleTimeoutSeconds * 4)), "the reload did not wait out clamd's default idle time");
            Assert.That(Listing(), Is.EqualTo(new[] { "tsunagu-2.ndb", "tsunagu.hdb" }));
            await AssertRefusedAsync(http, origin.Url("/marker.txt"), "Tsunagu.Test.Marker");
            Assert.That(squid.Clamd!.HasExited, Is.False, "clamd reloaded in place");
            var installed = File.ReadAllBytes(Path.Combine(directory, "tsunagu-2.ndb"));

            // a broken database (also one replacing the installed one) is refused: nothing changes
            foreach (var broken in new[] { "tsunagu-3.ndb", "tsunagu-2.ndb" })
            {
                var e = Assert.ThrowsAsync<SignatureInstallException>(() => installer.InstallAsync(broken, new MemoryStream("not a signature\n"u8.ToArray()), CancellationToken.None));
                Assert.That(e!.Message, Does.Contain(refusal));
                Assert.That(squid.Clamd!.HasExited, Is.False, "clamd still runs");
                Assert.That(Listing(), Is.EqualTo(new[] { "tsunagu-2.ndb", "tsunagu.hdb" }), "the directory is as it was");
                Assert.That(File.ReadAllBytes(Path.Combine(directory, "tsunagu-2.ndb")), Is.EqualTo(installed));
            }
            // hostile names and empty databases never reach the directory
            foreach (var name in new[] { "../evil.ndb", "x.ndb/..", "Tsunagu.NDB", "a.conf", "tsunagu\n.ndb", "" })
            {
                Assert.ThrowsAsync<SignatureInstallException>(() => installer.InstallAsync(name, new MemoryStream(Encoding.ASCII.GetBytes(HostVirusScan.EicarHashSignature("X"))), CancellationToken.None), name);
            }
            Assert.ThrowsAsync<SignatureInstallException>(() => installer.InstallAsync("empty.hdb", new MemoryStream(), CancellationToken.None));
            Assert.That(Listing(), Is.EqualTo(new[] { "tsunagu-2.ndb", "tsunagu.hdb" }));
            Assert.That(Directory.GetDirectories(Path.GetDirectoryName(directory)!, ".clamav-staging-*"), Is.Empty, "no staging left behind");

            // the old signatures are all still in force and clean files pass
            await AssertRefusedAsync(http, origin.Url("/eicar.com"), "Tsunagu.Test.Eicar");
            await AssertRefusedAsync(http, origin.Url("/marker.txt"), "Tsunagu.Test.Marker");
            Assert.That(await http.GetByteArrayAsync(origin.Url("/clean.bin")), Is.EqualTo(clean));
        }
        finally
        {
            await squid.StopAsync();
            Directory.Delete(root, recursive: true);
        }
    }

    private static async Task AssertRefusedAsync(HttpClient http, string url, string signature)
    {
        using var response = await http.GetAsync(url);
        var page = await response.Content.ReadAsStringAsync();
        Assert.That(response.StatusCode, Is.EqualTo(HttpStatusCode.Forbidden), $"{url}:\n{page}");
        Assert.That(page, Does.Contain("VIRUS FOUND").And.Contain(signature).And.Contain(url), "a clear page: what was found, and where");
        Assert.That(page, Does.Not.Contain("EICAR-STANDARD-ANTIVIRUS-TEST-FILE"), "the content itself is not passed on");
    }

    private static int Reloads(string log) => File.Exists(log) ? File.ReadAllLines(log).Count(l => l.Contains("Database correctly reloaded", StringComparison.Ordinal)) : 0;

    private static async Task WaitForAsync(Func<bool> done, string what, string log)
    {
        var deadline = System.Diagnostics.Stopwatch.StartNew();
        while (!done())
        {
            if (deadline.Elapsed > TimeSpan.FromSeconds(120)) { Assert.Fail($"timed out waiting for {what}:\n{(File.Exists(log) ? File.ReadAllText(log) : "")}"); }
            await Task.Delay(100);
        }
    }

    private static long IdleRssKilobytes(int pid) =>
        long.Parse(File.ReadAllLines($"/proc/{pid}/status").First(l => l.StartsWith("VmRSS:", StringComparison.Ordinal))["VmRSS:".Length..].Replace("kB", "").Trim(),
            System.Globalization.CultureInfo.InvariantCulture);
}
