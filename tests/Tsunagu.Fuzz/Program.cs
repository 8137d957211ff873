using System.Globalization;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using SharpFuzz;
using Tsunagu.Demo;
using Tsunagu.Hal;
using Tsunagu.Protocol;
using Tsunagu.Protocol.Bundles;

namespace Tsunagu.Fuzz;

/// <summary>
/// The fuzz driver (`make fuzz`, tests/Tsunagu.Fuzz/fuzz.sh):
///   list                          the targets and what each calls
///   afl TARGET                    one target under afl-fuzz (SharpFuzz's fork server; input on stdin)
///   run TARGET SECONDS [SEED]     one target in-process (mutations of its corpus, no instrumentation)
///   replay TARGET FILE...         each file through one target: accepted, refused or the crash
///   seed DIR                      writes the seed corpus (valid inputs made by the real writers) under DIR/TARGET/
/// </summary>
public static class Program
{
    public static string CorpusDirectory => Path.Combine(AppContext.BaseDirectory, "corpus");

    public static int Main(string[] args)
    {
        switch (args)
        {
            case ["list"]:
                foreach (var t in FuzzTargets.All) { Console.WriteLine($"{t.Name,-15} {t.Parser}"); }
                return 0;
            case ["afl", var name]:
            {
                // instrumented code may run only inside Fuzzer.Run, once the coverage map is set up: the targets
                // (and their static keys, boards...) are made on the first input
                FuzzTarget? target = null;
                Fuzzer.Run(stream =>
                {
                    target ??= FuzzTargets.Get(name);
                    using var buffer = new MemoryStream();
                    stream.CopyTo(buffer);
                    target.Execute(buffer.ToArray());
                });
                return 0;
            }
            case ["run", var name, var seconds, .. var rest] when rest.Length <= 1:
            {
                var target = FuzzTargets.Get(name);
                var seed = rest.Length == 1 ? int.Parse(rest[0], CultureInfo.InvariantCulture) : Environment.TickCount;
                var corpus = InProcessFuzzer.Corpus(CorpusDirectory, name).Select(c => c.Bytes).ToList();
                var run = InProcessFuzzer.Run(target, corpus, seed, TimeSpan.FromSeconds(double.Parse(seconds, CultureInfo.InvariantCulture)));
                Console.WriteLine($"{run.Target}: {run.Executions} executions in {run.Elapsed.TotalSeconds:F0} s (seed {seed}), " +
                                  $"{run.Accepted} accepted, {run.Refused} refused, {run.Crashes.Count} crash(es)");
                foreach (var crash in run.Crashes)
                {
                    Console.WriteLine($"  crash {crash.Signature}\n    input (base64): {Convert.ToBase64String(crash.Input)}\n    {crash.Exception.Message}");
                }
                return run.Crashes.Count == 0 ? 0 : 1;
            }
            case ["replay", var name, .. var files] when files.Length > 0:
            {
                var target = FuzzTargets.Get(name);
                var crashed = 0;
                foreach (var file in files)
                {
                    try
                    {
                        Console.WriteLine($"{file}: {target.Execute(File.ReadAllBytes(file)).ToString().ToLowerInvariant()}");
                    }
                    catch (Exception e)
                    {
                        crashed++;
                        Console.WriteLine($"{file}: CRASH {e}");
                    }
                }
                return crashed == 0 ? 0 : 1;
            }
            case ["seed", var dir]:
                Seed(dir);
                return 0;
            default:
                Console.Error.WriteLine("usage: Tsunagu.Fuzz list | afl TARGET | run TARGET SECONDS [SEED] | replay TARGET FILE... | seed DIR");
                return 2;
        }
    }

    /// <summary>Valid inputs of every target, written by the code that writes them for real (and a few refused ones).</summary>
    private static void Seed(string root)
    {
        void Write(string target, string name, byte[] bytes)
        {
            Directory.CreateDirectory(Path.Combine(root, target));
            File.WriteAllBytes(Path.Combine(root, target, name), bytes);
        }
        var utf8 = new UTF8Encoding(false);
        var created = new DateTimeOffset(2026, 1, 1, 0, 0, 0, TimeSpan.Zero);
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var template = new BundleManifest(BundleManifest.CurrentFormat, "p1-to-p2", 2, [DemoCatalogue.Pattern1], DemoCatalogue.Pattern2,
            new BundleCompatibility([DemoCatalogue.Board], [DemoCatalogue.HardwareVersion], [DemoCatalogue.OsVersion]), 3, created, created.AddYears(1),
            [], [new BundleStep(StepActions.RunScript, "check", ScriptPhases.PreInstall, 30), new BundleStep(StepActions.InstallApplication, "firewall"),
                new BundleStep(StepActions.InstallOs, "os")]);
        var payloads = new List<(BundlePayload, byte[])>
        {
            (new BundlePayload("check", PayloadKinds.Script, 0, ""), utf8.GetBytes("#!/bin/sh\nexit 0\n")),
            (new BundlePayload("firewall", PayloadKinds.Application, 0, "", "firewall", "1.1.0"),
                BundleFormat.ApplicationTar(new Dictionary<string, byte[]> { ["VERSION"] = utf8.GetBytes("firewall 1.1.0\n") })),
            (new BundlePayload("os", PayloadKinds.OsImage, 0, "", Version: "tsunagu-os 1.1"), utf8.GetBytes("hsqs os image")),
        };
        var bundle = BundleFormat.BuildAsync(template, payloads, [key], CancellationToken.None).GetAwaiter().GetResult();
        Write("bundle", "p1-to-p2.tsb", bundle);
        var header = BundleFormat.ReadHeaderAsync(new MemoryStream(bundle), CancellationToken.None).GetAwaiter().GetResult();
        Write("manifest", "p1-to-p2.json", header.ManifestBytes);
        var small = BundleFormat.BuildAsync(template with { Steps = [new BundleStep(StepActions.RunScript, "check", ScriptPhases.Health)] }, payloads.Take(1).ToList(),
            [key], CancellationToken.None).GetAwaiter().GetResult();
        Write("bundle", "script-only.tsb", small);

        var temp = Directory.CreateTempSubdirectory("tsunagu-fuzz-seed-").FullName;
        try
        {
            File.WriteAllBytes(Path.Combine(temp, "a.tsb"), small);
            using var media = new MemoryStream();
            MediaImage.WriteAsync(media, "seed medium", [Path.Combine(temp, "a.tsb")], created, CancellationToken.None).GetAwaiter().GetResult();
            Write("media", "one-bundle.tar", media.ToArray());
            using var empty = new MemoryStream();
            MediaImage.WriteAsync(empty, "empty medium", [], created, CancellationToken.None).GetAwaiter().GetResult();
            Write("media", "no-bundle.tar", empty.ToArray());
        }
        finally
        {
            Directory.Delete(temp, recursive: true);
        }

        Write("service-config", "standard.json", JsonSerializer.SerializeToUtf8Bytes(DemoCatalogue.StandardServices, ProtocolJson.Default.ServiceConfiguration));
        var full = new ServiceConfiguration(
            new FirewallConfig("reject", true, [new PortForward("tcp", 8080, "192.168.10.20", 80), new PortForward("udp", 5060, "192.168.10.21", 5060)]),
            new DhcpConfig("192.168.10.1", 24, "192.168.10.100", "192.168.10.199", "12h", [new StaticLease("02:00:00:00:00:09", "192.168.10.9", "printer")]),
            new DnsConfig("home.arpa", ["192.0.2.53", "2001:db8::53"]),
            new ContentFilterConfig(true, ["ads.example"], ["198.51.100.0/24", "203.0.113.7"]),
            new VpnConfig(true, 51820, "10.9.0.1/24", [new VpnPeer("office", Convert.ToBase64String(new byte[32]), "10.9.0.2/32,10.9.1.0/24", "vpn.example:51820")]),
            new CacheConfig(true, 512));
        Write("service-config", "every-service.json", JsonSerializer.SerializeToUtf8Bytes(full, ProtocolJson.Default.ServiceConfiguration));

        var boards = Path.Combine(RepositoryRoot(), "board");
        foreach (var board in Directory.GetDirectories(boards).Order(StringComparer.Ordinal))
        {
            Write("board", Path.GetFileName(board) + ".json", File.ReadAllBytes(Path.Combine(board, "board.json")));
        }

        Write("csv", "units.csv", utf8.GetBytes(
            "mac,serial,isp_method,isp_username,isp_password,domain,vpn,subscriber\n02:54:53:00:10:01,S1,pppoe,\"u1@isp\",pw1,one.example,\"office, \"\"east\"\"\",alice\n" +
            "025453001002,S2,dhcp,,,two.example,,\n"));
        Write("csv", "every-column.csv", utf8.GetBytes(
            "mac,serial,hardware_version,isp_method,isp_username,isp_password,ip_address,isp_gateway,isp_dns,domain,vpn,global_ip,subscriber,target_pattern\r\n" +
            "02:54:53:00:10:03,S3,r1,static,,,198.51.100.3/24,198.51.100.1,192.0.2.53 192.0.2.54,three.example,office,203.0.113.3,carol,\r\n"));
        // refused rows, so that mutations also start from the WAN account's refusals: a comma in a PPP user name, a
        // static account without gateway, a name server with a second line, a gateway on a dhcp account
        Write("csv", "refused-wan-accounts.csv", utf8.GetBytes(
            "mac,serial,isp_method,isp_username,isp_password,ip_address,isp_gateway,isp_dns\n" +
            "02:54:53:00:10:04,S4,pppoe,\"u4,x@isp\",pw4,,,\n" +
            "02:54:53:00:10:05,S5,static,,,198.51.100.5,,\n" +
            "02:54:53:00:10:06,S6,static,,,198.51.100.6,198.51.100.1,\"192.0.2.53\nnameserver 6.6.6.6\"\n" +
            "02:54:53:00:10:07,S7,dhcp,,,,198.51.100.1,\n"));

        Write("push", "check.json", JsonSerializer.SerializeToUtf8Bytes(new PushMessage(PushMessage.CheckNow, 3, "n0nce-n0nce-", created), ProtocolJson.Default.PushMessage));

        var state = BootStateFile.Empty();
        state.SetSlot(BootStateFile.Primary, Tsunagu.Hal.BootSlot.A);
        state.Set("a_version", "tsunagu-os 1.0");
        state.Set("a_good", "1");
        Write("boot-state", "factory", utf8.GetBytes(state.ToString()));
        state.SetSlot(BootStateFile.Pending, Tsunagu.Hal.BootSlot.B);
        state.SetInt(BootStateFile.Tries, 3);
        state.Set("b_version", "tsunagu-os 1.1");
        Write("boot-state", "pending-update", utf8.GetBytes("# written by the boot program\n" + state.ToString()));
    }

    private static string RepositoryRoot()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
        {
            if (File.Exists(Path.Combine(dir.FullName, "Tsunagu.slnx"))) { return dir.FullName; }
        }
        throw new InvalidOperationException($"no Tsunagu.slnx above {AppContext.BaseDirectory}");
    }
}
