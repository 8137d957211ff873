using System.Diagnostics;
using System.Globalization;
using CsCheck;
using Tsunagu.Firmware.Services;
using Tsunagu.Protocol;

namespace Tsunagu.UnitTests.Services;

/// <summary>
/// Hostile service configurations: every string field gets generated hostile text (line breaks, NUL and other
/// controls, each daemon's separators, directives, long and non-ASCII text, near-valid values) and every number hostile
/// values. Either validation refuses the configuration naming a field, or the rendered files hold exactly the
/// directives the renderer writes for a configuration of that shape, and the daemons' own checkers accept them.
/// Without validation, the renderer's own guards alone still never let a value add or split a directive.
/// </summary>
[NonParallelizable]
public class ServiceConfigPropertyTests
{
    private const long Iterations = 4000;
    /// <summary>Daemon checks cost a process each; the accepted configurations checked by the daemons are bounded by this.</summary>
    private const int MaxDaemonChecks = 40;

    private static readonly string[] Nasty =
    [
        "\n", "\r", "\r\n", "\0", "\t", "\v", "\f", "\u001b", "\u007f", "\u0085", "\u2028", "\u2029", "\ufeff", " ", ",", "#", "/", "\"", "'",
        "\\", "{", "}", ";", "=", "[", "]", ":", "@", "*", "$", "%", "é", "名", "\U0001F600", "\ud800", "-", ".", "..", "0", "-1",
        "infinite", "ignore", "dhcp-script=/tmp/x", "\ndhcp-script=/tmp/pwn\n", "\nconf-dir=/tmp\n", "\nserver=/#/203.0.113.66\n",
        "\n[Peer]\nPublicKey = x\n", "\" accept\n  }\n", " accept", "\ninclude /etc/passwd\n", "\\\nhttp_access allow all",
        "}\ntable inet x { }\n", "1.2.3.4\nserver=6.6.6.6",
    ];

    private static readonly Gen<string> NastyPiece = Gen.OneOf(Nasty);

    private static readonly Gen<int> HostileNumber = Gen.Frequency(
        (3, (IGen<int>)Gen.OneOf(int.MinValue, -65536, -1, 0, 1, 7, 8, 15, 16, 30, 31, 32, 33, 128, 129, 65535, 65536, 1_048_576, 1_048_577, int.MaxValue)),
        (1, Gen.Int));

    /// <summary>
    /// A field's value: valid with weight <paramref name="valid"/> against 9 for hostile forms (a nasty piece alone, spliced
    /// into a valid value or appended to it, random text of separators and controls, very long text).
    /// </summary>
    private static Gen<string> Field(Gen<string> valid, int weight) => Gen.Frequency(
        (weight, (IGen<string>)valid),
        (2, NastyPiece),
        (3, Gen.Select(valid, NastyPiece, Gen.Int[0, 100], (v, n, at) => v.Insert(at % (v.Length + 1), n))),
        (2, Gen.Select(valid, NastyPiece, (v, n) => v + n)),
        (1, Gen.String[" \n\r\t\0,#/\"'\\{};=[]:.-_abcXYZ0129é名\u2028"]),
        (1, Gen.Int[254, 5000].Select(n => new string('a', n))));

    private static Gen<int> Number(Gen<int> valid, int weight) => Gen.Frequency((Math.Max(1, weight / 2), (IGen<int>)valid), (1, HostileNumber));

    private static Gen<string?> Optional(Gen<string> value) => Gen.Frequency((1, (IGen<string?>)Gen.Const((string?)null)), (4, value.Select(v => (string?)v)));

    private static readonly Gen<string> Octet = Gen.Int[0, 255].Select(i => i.ToString(CultureInfo.InvariantCulture));
    private static readonly Gen<string> V4 = Gen.Select(Octet, Octet, Octet, Octet, (a, b, c, d) => $"{a}.{b}.{c}.{d}");
    private static readonly Gen<string> Lan4 = Gen.Int[1, 254].Select(i => $"192.168.10.{i}");
    private static readonly Gen<string> V6 = Gen.Select(Gen.Int[0, 0xffff], Gen.Int[0, 0xffff], (a, b) => $"fd00:{a:x}::{b:x}");
    private static readonly Gen<string> Address = Gen.Frequency((3, (IGen<string>)V4), (1, V6));
    private static readonly Gen<string> Network4 = Gen.Select(V4, Gen.Int[0, 32], (a, bits) => Mask(a, bits));
    private static readonly Gen<string> Network6 = Gen.Select(V6, Gen.Int[0, 128], (a, bits) => Mask(a, bits));
    private static readonly Gen<string> Mac = Gen.Long.Select(v => string.Join(':', BitConverter.GetBytes(v).Take(6).Select(x => x.ToString("x2", CultureInfo.InvariantCulture))));
    private static readonly Gen<string> Label = Gen.Select(Gen.Char['a', 'z'], Gen.String["abcdefghijklmnopqrstuvwxyz0123456789-"],
        (first, rest) => (first + rest[..Math.Min(rest.Length, 12)]).TrimEnd('-'));
    private static readonly Gen<string> Domain = UpTo3(Label, 1).Select(l => string.Join('.', l));
    private static readonly Gen<string> LeaseTime = Gen.Frequency(
        (1, (IGen<string>)Gen.Const("infinite")),
        (6, Gen.Select(Gen.Int[2, 500], Gen.OneOf("m", "h", "d", "w"), (n, u) => $"{n}{u}")),
        (1, Gen.Int[120, 100_000].Select(n => n.ToString(CultureInfo.InvariantCulture))));
    private static readonly Gen<string> Key = Gen.Select(Gen.Long, Gen.Long, Gen.Long, Gen.Long,
        (a, b, c, d) => Convert.ToBase64String([.. BitConverter.GetBytes(a), .. BitConverter.GetBytes(b), .. BitConverter.GetBytes(c), .. BitConverter.GetBytes(d)]));
    private static readonly Gen<string> Prefix = Gen.Frequency(
        (3, (IGen<string>)Gen.Select(V4, Gen.Int[0, 32], (a, b) => $"{a}/{b}")), (1, Gen.Select(V6, Gen.Int[0, 128], (a, b) => $"{a}/{b}")));
    private static readonly Gen<string> AllowedIps = UpTo3(Prefix, 1).Select(p => string.Join(", ", p));
    private static readonly Gen<string> Endpoint = Gen.Frequency(
        (2, (IGen<string>)Gen.Select(V4, Gen.Int[1, 65535], (a, p) => $"{a}:{p}")),
        (1, Gen.Select(V6, Gen.Int[1, 65535], (a, p) => $"[{a}]:{p}")),
        (1, Gen.Select(Domain, Gen.Int[1, 65535], (d, p) => $"{d}:{p}")));
    private static readonly Gen<string> PeerName = Gen.String["abcXYZ019 ._-@+()名前"].Select(a => a[..Math.Min(a.Length, 40)].Trim() is { Length: > 0 } n ? n : "peer");

    /// <summary>Whole configurations; the higher <paramref name="weight"/>, the fewer hostile values in one.</summary>
    private static Gen<ServiceConfiguration> Build(int weight)
    {
        Gen<string> F(Gen<string> valid) => Field(valid, weight);
        Gen<int> N(Gen<int> valid) => Number(valid, weight);
        var portForward = Gen.Select(F(Gen.OneOf("tcp", "udp")), N(Gen.Int[1, 65535]), F(Address), N(Gen.Int[1, 65535]), (p, e, a, i) => new PortForward(p, e, a, i));
        var lease = Gen.Select(F(Mac), F(Lan4), Optional(F(Label)), (m, a, h) => new StaticLease(m, a, h));
        var peer = Gen.Select(F(PeerName), F(Key), F(AllowedIps), Optional(F(Endpoint)), (n, k, a, e) => new VpnPeer(n, k, a, e));
        return Gen.Select(
            Gen.Select(F(Gen.OneOf("drop", "reject")), Gen.Bool, UpTo3(portForward), (d, m, f) => new FirewallConfig(d, m, f)),
            Gen.Select(F(Gen.Const("192.168.10.1")), N(Gen.Int[8, 30]), F(Gen.Const("192.168.10.100")), F(Gen.Const("192.168.10.199")),
                F(LeaseTime), UpTo3(lease), (l, p, s, e, t, leases) => new DhcpConfig(l, p, s, e, t, leases)),
            Gen.Select(F(Domain), UpTo3(F(Address)), (d, u) => new DnsConfig(d, u)),
            Gen.Select(Gen.Bool, UpTo3(F(Domain)), UpTo3(Optional(F(Gen.Frequency((3, (IGen<string>)Network4), (1, Network6))))),
                (e, d, a) => new ContentFilterConfig(e, d, a.Any(x => x is null) ? null : a.Select(x => x!).ToList())),
            Gen.Select(Gen.Bool, N(Gen.Int[1, 65535]), Optional(F(Prefix)), UpTo3(peer), (e, p, a, peers) => new VpnConfig(e, p, a, peers)),
            Gen.Select(Gen.Bool, N(Gen.Int[16, 4096]), Gen.Frequency((1, (IGen<int?>)Gen.Const((int?)null)), (2, N(Gen.Int[1, 512]).Select(m => (int?)m))),
                (e, s, m) => new CacheConfig(e, s, m)),
            (f, d, n, c, v, k) => new ServiceConfiguration(f, d, n, c, v, k));
    }

    /// <summary>A mix: configurations with a hostile value here and there, and ones with many.</summary>
    private static readonly Gen<ServiceConfiguration> Configuration = Gen.Frequency(
        (2, (IGen<ServiceConfiguration>)Build(600)), (2, Build(60)), (1, Build(12)));

    private static ServiceEnvironment Environment => ServiceConfigTests.WithHdd;

    /// <summary>A list of <paramref name="min"/> to 3 entries.</summary>
    private static Gen<List<T>> UpTo3<T>(Gen<T> entry, int min = 0) =>
        Gen.Select(Gen.Int[min, 3], entry, entry, entry, (n, a, b, c) => new List<T> { a, b, c }.Take(n).ToList());

    /// <summary>"10.1.2.3", 8 -> "10.0.0.0/8": a network without host bits.</summary>
    private static string Mask(string address, int bits)
    {
        var bytes = System.Net.IPAddress.Parse(address).GetAddressBytes();
        for (var i = 0; i < bytes.Length; i++)
        {
            var keep = Math.Clamp(bits - i * 8, 0, 8);
            bytes[i] &= (byte)(0xff << (8 - keep));
        }
        return $"{new System.Net.IPAddress(bytes)}/{bits}";
    }

    [Test]
    public void Hostile_configurations_are_refused_or_render_exactly_the_renderers_directives_and_the_daemons_accept_them()
    {
        var tools = DaemonTools.Require();
        var root = Path.Combine(Path.GetTempPath(), "tsunagu-prop-" + Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(root);
        long refused = 0, accepted = 0, daemonChecked = 0;
        var refusedFields = new System.Collections.Concurrent.ConcurrentDictionary<string, int>();
        try
        {
            Configuration.Sample(config =>
            {
                try
                {
                    ServiceConfigValidator.Validate(config);
                }
                catch (InvalidServiceConfigException e)
                {
                    Assert.That(e.Field, Is.Not.Empty);
                    Assert.That(e.Message, Does.StartWith(e.Field + ": "));
                    Assert.That(e.Message.Any(RenderGuard.IsLineBreaking), Is.False, "the refusal is one line");
                    refusedFields.AddOrUpdate(Family(e.Field), 1, (_, n) => n + 1);
                    Interlocked.Increment(ref refused);
                    return;
                }
                Interlocked.Increment(ref accepted);
                var files = ServiceRenderer.Render(config, Environment);
                AssertSameDirectives(files, ServiceRenderer.Render(Shape(config), Environment));
                if (Interlocked.Increment(ref daemonChecked) <= MaxDaemonChecks)
                {
                    var dir = Path.Combine(root, Guid.NewGuid().ToString("N"));
                    Directory.CreateDirectory(dir);
                    foreach (var (name, text) in files) { File.WriteAllText(Path.Combine(dir, name), text); }
                    tools.Check(dir, files.Keys);
                }
            }, iter: Iterations, threads: 2, print: Describe);
        }
        finally
        {
            Directory.Delete(root, recursive: true);
        }
        TestContext.Out.WriteLine($"refused {refused}, accepted {accepted}, daemon-checked {Math.Min(daemonChecked, MaxDaemonChecks)}; refused by field: " +
            string.Join(", ", refusedFields.OrderBy(p => p.Key).Select(p => $"{p.Key} {p.Value}")));
        Assert.That(accepted, Is.GreaterThanOrEqualTo(MaxDaemonChecks), "enough configurations passed validation to reach the daemons' checkers");
        Assert.That(refused, Is.GreaterThan(Iterations / 4), "hostile values were generated and refused");
        Assert.That(refusedFields.Keys, Is.SupersetOf(new[]
        {
            "firewall.defaultInbound", "firewall.portForwards.protocol", "firewall.portForwards.internalAddress", "dhcp.lanAddress", "dhcp.rangeStart",
            "dhcp.leaseTime", "dhcp.staticLeases.mac", "dhcp.staticLeases.hostname", "dns.localDomain", "dns.upstreams", "contentFilter.blockedDomains",
            "contentFilter.blockedAddresses", "vpn.peers.name", "vpn.peers.publicKey", "vpn.peers.allowedIps", "vpn.peers.endpoint",
        }), "every string field was exercised with hostile values");
    }

    [Test]
    public void The_renderers_own_guards_keep_every_directive_in_place_without_validation()
    {
        long guarded = 0, rendered = 0;
        Configuration.Sample(config =>
        {
            IReadOnlyDictionary<string, string> files;
            try
            {
                files = ServiceRenderer.RenderChecked(config, Environment);
            }
            catch (UnsafeConfigValueException e)
            {
                Assert.That(e.Field, Is.Not.Empty);
                Interlocked.Increment(ref guarded);
                return;
            }
            Interlocked.Increment(ref rendered);
            AssertSameDirectives(files, ServiceRenderer.RenderChecked(Shape(config), Environment));
            foreach (var (name, text) in files)
            {
                Assert.That(text.Where(RenderGuard.IsLineBreaking).All(c => c == '\n'), Is.True, $"{name} holds no control character but its line ends");
            }
        }, iter: Iterations * 2, threads: 2, print: Describe);
        TestContext.Out.WriteLine($"guards refused {guarded}, rendered {rendered}");
        Assert.That(guarded, Is.GreaterThan(Iterations / 4));
        Assert.That(rendered, Is.GreaterThan(Iterations / 10));
    }

    /// <summary>"vpn.peers[2].name" -> "vpn.peers.name".</summary>
    private static string Family(string field) => System.Text.RegularExpressions.Regex.Replace(field, @"\[\d+\]", "");

    private static string Describe(ServiceConfiguration c) =>
        System.Text.Json.JsonSerializer.Serialize(c, ProtocolJson.Default.ServiceConfiguration);

    /// <summary>
    /// A configuration of the same shape (the same lists with as many entries, the same switches, addresses of the same
    /// family, optional values present or not) with plain values: what the renderer must write line for line.
    /// </summary>
    internal static ServiceConfiguration Shape(ServiceConfiguration c) => new(
        new FirewallConfig(c.Firewall.DefaultInbound == "reject" ? "reject" : "drop", c.Firewall.Masquerade,
            c.Firewall.PortForwards.Select((p, i) => new PortForward("tcp", 8080 + i, p.InternalAddress.Contains(':') ? "fd00::20" : "192.168.10.20", 80)).ToList()),
        new DhcpConfig("192.168.10.1", 24, "192.168.10.100", "192.168.10.199", "12h",
            c.Dhcp.StaticLeases.Select((l, i) => new StaticLease($"02:00:00:00:00:{i:x2}", $"192.168.10.{10 + i}", string.IsNullOrEmpty(l.Hostname) ? l.Hostname : "printer")).ToList()),
        new DnsConfig("home.arpa", c.Dns.Upstreams.Select(_ => "192.0.2.53").ToList()),
        new ContentFilterConfig(c.ContentFilter.Enabled, c.ContentFilter.BlockedDomains.Select(_ => "ads.example").ToList(),
            c.ContentFilter.BlockedAddresses?.Select(a => a.Contains(':') ? "2001:db8::/32" : "198.51.100.0/24").ToList()),
        new VpnConfig(c.Vpn.Enabled, 51820, c.Vpn.Address is null ? null : "10.9.0.1/24",
            c.Vpn.Peers.Select((p, i) => new VpnPeer($"peer{i}", "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
                string.Join(", ", Enumerable.Repeat("10.9.0.2/32", p.AllowedIps.Count(ch => ch == ',') + 1)),
                p.Endpoint is null ? null : p.Endpoint.Length == 0 ? "" : "192.0.2.7:51820")).ToList()),
        new CacheConfig(c.Cache.Enabled, 512));

    /// <summary>The same files, and in each the same sequence of directives: same keyword, same number of parts.</summary>
    internal static void AssertSameDirectives(IReadOnlyDictionary<string, string> actual, IReadOnlyDictionary<string, string> expected)
    {
        Assert.That(actual.Keys, Is.EqualTo(expected.Keys));
        foreach (var (name, text) in actual)
        {
            var got = Directives(name, text);
            var want = Directives(name, expected[name]);
            Assert.That(got, Is.EqualTo(want), $"{name}: the directives differ from those the renderer writes for this shape:\n{text}");
            Assert.That(got.Select(d => d.Split('|')[0]).Distinct(), Is.SubsetOf(KnownKeywords[name]), $"{name}: a keyword the renderer never writes:\n{text}");
        }
    }

    private static readonly IReadOnlyDictionary<string, string[]> KnownKeywords = new Dictionary<string, string[]>
    {
        [ServiceRenderer.Dnsmasq] =
        [
            "#", "interface", "bind-dynamic", "no-resolv", "no-hosts", "domain-needed", "bogus-priv", "pid-file", "dhcp-leasefile", "domain", "local",
            "expand-hosts", "server", "dhcp-authoritative", "dhcp-range", "dhcp-option", "dhcp-host", "address",
        ],
        [ServiceRenderer.Nftables] =
        [
            "#", "table", "delete", "set", "type", "elements", "chain", "ct", "iif", "iifname", "icmpv6", "reject", "ip", "ip6", "oifname", "tcp", "}",
        ],
        [ServiceRenderer.WireGuard] = ["#", "[Interface]", "[Peer]", "ListenPort", "PublicKey", "AllowedIPs", "Endpoint", "PersistentKeepalive", ""],
        [ServiceRenderer.Squid] =
        [
            "#", "http_port", "acl", "http_access", "visible_hostname", "dns_nameservers", "pinger_enable", "cache_mem", "maximum_object_size_in_memory", "cache_dir",
            "maximum_object_size", "range_offset_limit", "quick_abort_min", "refresh_pattern", "coredump_dir", "pid_filename", "cache_log", "access_log",
        ],
    };

    /// <summary>One signature a line: its keyword as the daemon reads it, and how many parts the daemon splits it into.</summary>
    private static List<string> Directives(string file, string text)
    {
        var lines = text.Split('\n');
        Assert.That(lines[^1], Is.Empty, $"{file} ends with a newline");
        return lines[..^1].Select(line => file switch
        {
            ServiceRenderer.Dnsmasq => line.StartsWith('#') ? "#" : $"{line.Split('=')[0]}|{line.Count(c => c == ',')}|{line.Count(c => c == '/')}|{line.Count(c => c == '=')}",
            ServiceRenderer.WireGuard => line.StartsWith('#') ? "#" : line.StartsWith('[') ? line : $"{line.Split('=')[0].Trim()}|{line.Count(c => c == ',')}|{line.Count(c => c == '#')}",
            _ => line.TrimStart().StartsWith('#') ? "#" : $"{line.Split(' ', StringSplitOptions.RemoveEmptyEntries).FirstOrDefault() ?? ""}|{line.Split(' ', StringSplitOptions.RemoveEmptyEntries).Length}|{line.Count(c => c is '"' or ';' or '{' or '}' or '#' or '\\')}",
        }).ToList();
    }
}

/// <summary>
/// The daemons' own configuration checkers, as CI installs them. A missing one fails the test (it is not skipped): the
/// property is only proven when the daemons have read the files.
/// </summary>
internal sealed class DaemonTools
{
    private readonly string _dnsmasq, _nft, _squid;
    private readonly string? _unshare;

    private DaemonTools(string dnsmasq, string nft, string squid, string? unshare) => (_dnsmasq, _nft, _squid, _unshare) = (dnsmasq, nft, squid, unshare);

    public static DaemonTools Require()
    {
        var missing = new List<string>();
        string Find(string name)
        {
            var path = (System.Environment.GetEnvironmentVariable("PATH") ?? "").Split(':').Concat(["/usr/sbin", "/sbin", "/usr/bin", "/bin"])
                .Where(d => d.Length > 0).Select(d => Path.Combine(d, name)).FirstOrDefault(File.Exists);
            if (path is null) { missing.Add(name); }
            return path ?? "";
        }
        var tools = new DaemonTools(Find("dnsmasq"), Find("nft"), Find("squid"), System.Environment.UserName == "root" ? null : Find("unshare"));
        if (missing.Count > 0)
        {
            Assert.Fail($"the daemons' configuration checkers are needed and missing: {string.Join(", ", missing)} " +
                "(install dnsmasq, nftables, squid and util-linux; CI does)");
        }
        return tools;
    }

    public void Check(string dir, IEnumerable<string> files)
    {
        foreach (var file in files)
        {
            var path = Path.Combine(dir, file);
            switch (file)
            {
                case ServiceRenderer.Dnsmasq: Run(_dnsmasq, "--test", "-C", path); break;
                // nft needs CAP_NET_ADMIN even to check; a user namespace gives it to an unprivileged test run
                case ServiceRenderer.Nftables: if (_unshare is null) { Run(_nft, "--check", "--file", path); } else { Run(_unshare, "-rn", _nft, "--check", "--file", path); } break;
                case ServiceRenderer.Squid: Run(_squid, "-k", "parse", "-f", path); break;
                case ServiceRenderer.WireGuard: break; // `wg setconf` needs a live interface; the file's structure is checked above
                default: Assert.Fail($"no checker for {file}"); break;
            }
        }
    }

    private static void Run(string tool, params string[] args)
    {
        var start = new ProcessStartInfo(tool) { RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (var a in args) { start.ArgumentList.Add(a); }
        using var process = Process.Start(start)!;
        var stdout = process.StandardOutput.ReadToEndAsync();
        var stderr = process.StandardError.ReadToEndAsync();
        if (!process.WaitForExit(TimeSpan.FromSeconds(30)))
        {
            process.Kill(entireProcessTree: true);
            Assert.Fail($"{tool} {string.Join(' ', args)} did not finish in 30 s");
        }
        Assert.That(process.ExitCode, Is.Zero, $"{Path.GetFileName(tool)} refused the rendered file {args[^1]}:\n{stderr.Result}\n{stdout.Result}\n{File.ReadAllText(args[^1])}");
    }
}
