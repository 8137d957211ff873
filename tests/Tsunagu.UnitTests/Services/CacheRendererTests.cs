using CsCheck;
using Tsunagu.Firmware.Services;
using Tsunagu.Hal;
using Tsunagu.Protocol;
using Tsunagu.UnitTests.Hal;

namespace Tsunagu.UnitTests.Services;

/// <summary>
/// The transparent cache as rendered: squid's ports, limits, range and revalidation settings, and the firewall's
/// redirect of the LAN's HTTP, which exists exactly when squid runs (a unit without a cache disk runs no cache and
/// redirects nothing). The real checkers (`squid -k parse`, `nft --check`) read every rendered file.
/// </summary>
public class CacheRendererTests
{
    private static ServiceEnvironment WithHdd => ServiceConfigTests.WithHdd;
    private static ServiceEnvironment NoHdd => WithHdd with { Board = BoardDescription.Simulated };

    private static string RedirectLine(ServiceEnvironment env) => $"tcp dport 80 redirect to :{env.InterceptPort}";

    [Test]
    public void Squid_has_a_proxy_port_an_intercept_port_and_the_configured_limits()
    {
        var config = ServiceConfigTests.Valid() with { Cache = new CacheConfig(true, 2048, 700) };
        var squid = ServiceRenderer.Render(config, WithHdd)[ServiceRenderer.Squid];
        var lines = squid.Split('\n');
        Assert.Multiple(() =>
        {
            Assert.That(lines, Does.Contain("http_port 192.168.10.1:3128"));
            Assert.That(lines, Does.Contain("http_port 192.168.10.1:3129 intercept"));
            Assert.That(lines, Does.Contain("cache_dir ufs /hdd/squid 2048 16 256"));
            Assert.That(lines, Does.Contain("maximum_object_size 700 MB"));
            Assert.That(lines, Does.Contain("range_offset_limit 32 MB"), "a range far into a 700 MB object is not preceded by a fetch of everything before it");
            Assert.That(lines, Does.Contain("refresh_pattern . 0 20% 4320"));
            Assert.That(lines, Does.Contain("http_access deny manager"));
            // the cache manager is refused to the LAN: its deny comes before the LAN's allow
            Assert.That(Array.IndexOf(lines, "http_access deny manager"), Is.LessThan(Array.IndexOf(lines, "http_access allow lan")));
            Assert.That(lines, Does.Contain("access_log none"));
        });
    }

    [TestCase(null, 512, 256, 32)]
    [TestCase(null, 64, 64, 32)]
    [TestCase(16, 64, 16, 16)]
    [TestCase(8192, 1_048_576, 8192, 32)]
    public void The_largest_cached_object_defaults_to_256_MB_and_never_exceeds_the_cache(int? configured, int size, int expected, int rangeLimit)
    {
        var config = ServiceConfigTests.Valid() with { Cache = new CacheConfig(true, size, configured) };
        var squid = ServiceRenderer.Render(config, WithHdd)[ServiceRenderer.Squid];
        Assert.That(squid.Split('\n'), Does.Contain($"maximum_object_size {expected} MB").And.Contain($"range_offset_limit {rangeLimit} MB"));
    }

    [Test]
    public void A_range_fetch_of_the_whole_object_is_bounded_whatever_the_configuration()
    {
        Gen.Select(Gen.Int[ServiceConfigValidator.MinCacheMegabytes, ServiceConfigValidator.MaxCacheMegabytes], Gen.Int[1, ServiceConfigValidator.MaxObjectMegabytesLimit]).Sample((size, maxObject) =>
        {
            var config = ServiceConfigTests.Valid() with { Cache = new CacheConfig(true, size, Math.Min(maxObject, size)) };
            var line = ServiceRenderer.Render(config, WithHdd)[ServiceRenderer.Squid].Split('\n').Single(l => l.StartsWith("range_offset_limit ", StringComparison.Ordinal));
            var limit = int.Parse(line.Split(' ')[1], System.Globalization.CultureInfo.InvariantCulture);
            return limit >= 1 && limit <= ServiceRenderer.RangeOffsetLimitMegabytes && limit <= ServiceConfigValidator.MaxObjectMegabytes(config.Cache);
        });
    }

    [TestCase(0, 512)]
    [TestCase(-1, 512)]
    [TestCase(513, 512)]
    [TestCase(ServiceConfigValidator.MaxObjectMegabytesLimit + 1, 1_048_576)]
    [TestCase(int.MaxValue, 1_048_576)]
    public void A_largest_object_out_of_bounds_is_refused_naming_the_field(int maxObject, int size)
    {
        var config = ServiceConfigTests.Valid() with { Cache = new CacheConfig(true, size, maxObject) };
        var e = Assert.Throws<InvalidServiceConfigException>(() => ServiceRenderer.Render(config, WithHdd));
        Assert.That(e!.Field, Is.EqualTo("cache.maxObjectMegabytes"));
    }

    [Test]
    public void The_firewall_redirects_the_lans_http_to_squid_only_where_squid_runs()
    {
        var on = ServiceConfigTests.Valid();
        var off = on with { Cache = on.Cache with { Enabled = false } };
        var withCache = ServiceRenderer.Render(on, WithHdd)[ServiceRenderer.Nftables];
        Assert.Multiple(() =>
        {
            Assert.That(withCache, Does.Contain($"iifname \"{WithHdd.Lan}\" ip daddr != 192.168.10.1 {RedirectLine(WithHdd)}"));
            Assert.That(withCache, Does.Not.Contain("dport 443"), "HTTPS is never redirected");
            Assert.That(ServiceRenderer.Render(on, NoHdd)[ServiceRenderer.Nftables], Does.Not.Contain("redirect"), "no cache disk: no cache, no redirect");
            Assert.That(ServiceRenderer.Render(off, WithHdd)[ServiceRenderer.Nftables], Does.Not.Contain("redirect"), "cache off: no redirect");
        });
    }

    /// <summary>The nftables expressions the rendered rules use, each with the kernel module that carries it.</summary>
    private static readonly (string Expression, string Pattern, string Module)[] NftModules =
    [
        ("redirect", @"\bredirect\b", "nft_redir"),
        ("masquerade", @"\bmasquerade\b", "nft_masq"),
        ("dnat/snat", @"\b[ds]nat\b", "nft_nat"),
        ("nat chain", @"\btype nat hook\b", "nft_chain_nat"),
        ("ct", @"\bct (state|status|mark|original|reply)\b", "nft_ct"),
        ("reject", @"\breject\b", "nft_reject_inet"),
        ("fib", @"\bfib\b", "nft_fib_inet"),
        ("limit", @"\blimit rate\b", "nft_limit"),
        ("log", @"\blog\b", "nft_log"),
    ];

    [Test]
    public void Every_nftables_expression_the_rules_use_has_its_kernel_module_in_the_image()
    {
        // the richest rules: the cache (redirect), port forwards (dnat), a blocked address, NAT to the WAN
        var on = ServiceConfigTests.Valid();
        var rules = ServiceRenderer.Render(on with { ContentFilter = on.ContentFilter with { Enabled = true, BlockedAddresses = ["203.0.113.0/24"] } },
            WithHdd)[ServiceRenderer.Nftables];
        var statements = string.Join('\n', rules.Split('\n').Select(l => l.IndexOf('#', StringComparison.Ordinal) is var c and >= 0 ? l[..c] : l));
        // OS_MODULES of rootfs/rootfs.mk (continued lines joined): what the image loads at boot
        var recipe = File.ReadAllText(Path.Combine(BoardAndRunnerTests.RepositoryRoot(), "rootfs", "rootfs.mk")).Replace("\\\n", " ", StringComparison.Ordinal);
        var modules = System.Text.RegularExpressions.Regex.Match(recipe, @"^OS_MODULES := (.*)$", System.Text.RegularExpressions.RegexOptions.Multiline)
            .Groups[1].Value.Split(' ', StringSplitOptions.RemoveEmptyEntries);
        var used = NftModules.Where(m => System.Text.RegularExpressions.Regex.IsMatch(statements, m.Pattern)).ToList();
        Assert.That(used.Select(m => m.Expression), Does.Contain("redirect").And.Contain("masquerade").And.Contain("dnat/snat"),
            "precondition: the rules use the cache's redirect, NAT to the WAN and port forwards");
        Assert.That(modules, Does.Contain("nf_tables"), "precondition: OS_MODULES read");
        // the kernel refuses a rule whose expression's module is not loaded ("Could not process rule: No such file or
        // directory"), and with it the whole configuration
        Assert.That(used.Where(m => !modules.Contains(m.Module)).Select(m => $"{m.Expression} needs {m.Module}"), Is.Empty);
    }

    [Test]
    public void The_image_carries_the_helper_squids_rendered_cache_directory_needs()
    {
        var squid = ServiceRenderer.Render(ServiceConfigTests.Valid(), WithHdd)[ServiceRenderer.Squid];
        var recipe = File.ReadAllText(Path.Combine(BoardAndRunnerTests.RepositoryRoot(), "rootfs", "rootfs.mk"));
        var daemons = System.Text.RegularExpressions.Regex.Match(recipe, @"^CACHE_DAEMONS := (.*)$", System.Text.RegularExpressions.RegexOptions.Multiline)
            .Groups[1].Value.Split(' ', StringSplitOptions.RemoveEmptyEntries);
        Assert.That(daemons, Does.Contain("/usr/sbin/squid"), "precondition: CACHE_DAEMONS read");
        // a ufs cache_dir removes its files through unlinkd: without the helper `squid -z` stops ("unlinkd_program
        // /usr/lib/squid/unlinkd: (2) No such file or directory") and the configuration is refused
        Assert.That(squid, Does.Contain("\ncache_dir ufs "));
        Assert.That(daemons, Does.Contain("/usr/lib/squid/unlinkd"));
        // the other helper squid starts by default, pinger, is turned off: the image need not carry it
        Assert.That(squid, Does.Contain("\npinger_enable off\n"));
    }

    [Test]
    public void The_image_carries_every_program_the_services_of_a_board_without_virus_checking_run()
    {
        // every service on, the VPN and the cache included; virus checking runs only on boards whose board.json says
        // so, whose images carry ClamAV and c-icap besides (rootfs.mk VIRUS_*)
        var config = ServiceConfigTests.Valid() with { Vpn = ServiceConfigTests.Valid().Vpn with { Enabled = true } };
        var specs = ServiceCatalog.Build(config, WithHdd, "/data/services/current");
        Assert.That(specs.Select(s => s.Name), Is.EquivalentTo(new[] { "firewall", "lan", "dnsmasq", "wireguard", "squid" }), "precondition: every service but virus checking");
        var programs = specs.SelectMany(s => s.Checks.Concat(s.Setup).Concat(s.Configure).Concat(s.Probes).Concat(s.Ready).Append(s.Daemon))
            .OfType<CommandLine>().Select(c => c.Program).Distinct().ToList();
        // DAEMONS and CACHE_DAEMONS of rootfs/rootfs.mk (continued lines joined)
        var recipe = File.ReadAllText(Path.Combine(BoardAndRunnerTests.RepositoryRoot(), "rootfs", "rootfs.mk")).Replace("\\\n", " ", StringComparison.Ordinal);
        string[] Listed(string variable) => System.Text.RegularExpressions.Regex.Match(recipe, $@"^{variable} := (.*)$", System.Text.RegularExpressions.RegexOptions.Multiline)
            .Groups[1].Value.Split(' ', StringSplitOptions.RemoveEmptyEntries);
        var carried = Listed("DAEMONS").Concat(Listed("CACHE_DAEMONS")).Select(Path.GetFileName).ToHashSet();
        Assert.That(carried, Does.Contain("dnsmasq").And.Contain("squid"), "precondition: DAEMONS and CACHE_DAEMONS read");
        // busybox's applets these services use (image/lib.sh install_busybox links every applet of the static busybox)
        string[] busybox = ["busybox", "ip", "mkdir", "chown", "sysctl", "sh"];
        // a program the image lacks makes every configuration that turns its service on fail and roll back on a real unit
        // (wireguard-go was missing: no QEMU unit could ever run its VPN)
        Assert.That(programs.Where(p => !carried.Contains(p) && !busybox.Contains(p)), Is.Empty);
    }

    [Test]
    public void A_blocked_address_is_not_redirected_to_the_cache_so_the_forward_chain_still_refuses_it()
    {
        var on = ServiceConfigTests.Valid();
        var blocking = on with { ContentFilter = on.ContentFilter with { Enabled = true, BlockedAddresses = ["203.0.113.0/24"] } };
        var rules = ServiceRenderer.Render(blocking, WithHdd)[ServiceRenderer.Nftables];
        var redirect = rules.Split('\n').Single(l => l.Contains("redirect", StringComparison.Ordinal));
        Assert.Multiple(() =>
        {
            Assert.That(redirect, Does.Contain("ip daddr != @blocked4"), "squid would fetch a blocked address for the LAN: its own traffic does not pass the forward chain");
            Assert.That(rules, Does.Contain("ip daddr @blocked4 reject"));
        });
        var tools = DaemonTools.Require();
        var dir = Path.Combine(Path.GetTempPath(), "tsunagu-cache-" + Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(dir);
        try
        {
            File.WriteAllText(Path.Combine(dir, ServiceRenderer.Nftables), rules);
            tools.Check(dir, [ServiceRenderer.Nftables]);
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    [Test]
    public void The_daemons_checkers_accept_the_cache_and_its_redirect()
    {
        var tools = DaemonTools.Require();
        var dir = Path.Combine(Path.GetTempPath(), "tsunagu-cache-" + Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(dir);
        try
        {
            var files = ServiceRenderer.Render(ServiceConfigTests.Valid() with { Cache = new CacheConfig(true, 4096, 1024) }, WithHdd with { InterceptPort = 3130 });
            Assert.That(files[ServiceRenderer.Nftables], Does.Contain("tcp dport 80 redirect to :3130"));
            foreach (var (name, text) in files.Where(f => f.Key is ServiceRenderer.Squid or ServiceRenderer.Nftables))
            {
                File.WriteAllText(Path.Combine(dir, name), text);
            }
            tools.Check(dir, [ServiceRenderer.Squid, ServiceRenderer.Nftables]);
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    [TestCase(3128, 3128, "interceptPort")]
    [TestCase(0, 3129, "cachePort")]
    [TestCase(3128, 70000, "interceptPort")]
    public void Ports_the_environment_gives_are_checked(int port, int intercept, string field)
    {
        var e = Assert.Throws<UnsafeConfigValueException>(() => ServiceRenderer.Render(ServiceConfigTests.Valid(), WithHdd with { CachePort = port, InterceptPort = intercept }));
        Assert.That(e!.Field, Is.EqualTo(field));
    }

    private const string Modules = "/usr/lib/some-board-triplet/c_icap";

    /// <summary>A board that runs virus checking, with a signature database installed (without one virus checking waits: VirusScanWaitTests).</summary>
    private static ServiceEnvironment WithVirusScan(int memory, string modules = Modules) =>
        WithHdd with { Board = WithHdd.Board with { VirusScan = new BoardVirusScan(memory, modules) }, StateDirectory = StateWithSignatures.Value };

    private static readonly string SignaturesRoot = Path.Combine(Path.GetTempPath(), "tsunagu-render-signatures-" + Guid.NewGuid().ToString("N")[..12]);

    [OneTimeTearDown]
    public void RemoveSignatures()
    {
        if (Directory.Exists(SignaturesRoot)) { Directory.Delete(SignaturesRoot, recursive: true); }
    }

    private static readonly Lazy<string> StateWithSignatures = new(() =>
    {
        var state = Path.Combine(SignaturesRoot, "state");
        Directory.CreateDirectory(Path.Combine(state, "clamav"));
        File.WriteAllText(Path.Combine(state, "clamav", "test.hdb"), "44d88612fea8a8f36de82e1278abb02f:68:Test.Eicar\n");
        return state;
    });

    [Test]
    public void Virus_checking_runs_only_where_the_configuration_the_cache_and_the_board_allow_it()
    {
        var on = ServiceConfigTests.Valid() with { VirusScan = new VirusScanConfig(true) };
        string[] scanFiles = [ServiceRenderer.Clamd, ServiceRenderer.CIcap];
        Assert.Multiple(() =>
        {
            Assert.That(ServiceRenderer.Render(on, WithVirusScan(256)).Keys, Is.SupersetOf(scanFiles));
            Assert.That(ServiceRenderer.Render(on, WithVirusScan(256))[ServiceRenderer.Squid], Does.Contain("icap_service avscan respmod_precache bypass=off icap://127.0.0.1:1344/avscan"));
            Assert.That(ServiceRenderer.Render(on, WithHdd).Keys, Has.None.AnyOf(scanFiles), "the board cannot run it");
            Assert.That(ServiceRenderer.Render(on, WithHdd)[ServiceRenderer.Squid], Does.Not.Contain("icap"));
            Assert.That(ServiceRenderer.Render(ServiceConfigTests.Valid(), WithVirusScan(256)).Keys, Has.None.AnyOf(scanFiles), "the contract does not give it");
            Assert.That(ServiceRenderer.Render(on with { Cache = on.Cache with { Enabled = false } }, WithVirusScan(256)).Keys, Has.None.AnyOf(scanFiles), "no cache, no path for downloads");
            Assert.That(ServiceCatalog.Build(on, WithVirusScan(256), "/x").Select(s => s.Name),
                Is.EqualTo(new[] { "firewall", "lan", "dnsmasq", "wireguard", "clamd", "c-icap", "squid" }), "the checker is up before squid sends it downloads");
        });
    }

    [TestCase(64, "MaxThreads 1", "StreamMaxLength 4M", "ConcurrentDatabaseReload no")]
    [TestCase(256, "MaxThreads 1", "StreamMaxLength 16M", "ConcurrentDatabaseReload no")]
    [TestCase(2048, "MaxThreads 2", "StreamMaxLength 64M", "ConcurrentDatabaseReload yes")]
    public void The_boards_memory_sets_clamds_limits(int memory, string threads, string stream, string reload)
    {
        var clamd = ServiceRenderer.Render(ServiceConfigTests.Valid() with { VirusScan = new VirusScanConfig(true) }, WithVirusScan(memory))[ServiceRenderer.Clamd].Split('\n');
        Assert.That(clamd, Does.Contain(threads).And.Contain(stream).And.Contain(reload).And.Contain("SelfCheck 0"));
    }

    [TestCase(63)]
    [TestCase(0)]
    [TestCase(65537)]
    public void A_board_with_virus_scan_memory_out_of_bounds_is_refused(int memory)
    {
        var json = """{"name":"b","interfaces":{"wan":"eth0","lan":"eth1","vpn":"wg0"},"hdd":null,"virusScan":{"memoryMegabytes":MEMORY,"icapModulesDirectory":"/usr/lib/x/c_icap"}}""".Replace("MEMORY", memory.ToString(System.Globalization.CultureInfo.InvariantCulture));
        var e = Assert.Throws<BoardDescriptionException>(() => BoardDescription.Parse(json, "board.json"));
        Assert.That(e!.Message, Does.Contain("virusScan.memoryMegabytes"));
        Assert.That(BoardDescription.Parse(json.Replace($":{memory},", ":256,"), "board.json").VirusScan, Is.EqualTo(new BoardVirusScan(256, "/usr/lib/x/c_icap")));
    }

    [Test]
    public void The_c_icap_modules_directory_is_the_boards()
    {
        var icap = ServiceRenderer.Render(ServiceConfigTests.Valid() with { VirusScan = new VirusScanConfig(true) }, WithVirusScan(256, "/usr/lib/aarch64-linux-gnu/c_icap"))[ServiceRenderer.CIcap].Split('\n');
        Assert.That(icap, Does.Contain("ModulesDir /usr/lib/aarch64-linux-gnu/c_icap").And.Contain("ServicesDir /usr/lib/aarch64-linux-gnu/c_icap"));
        var firmware = Path.Combine(TestContext.CurrentContext.TestDirectory, "..", "..", "..", "..", "..", "firmware");
        foreach (var source in Directory.EnumerateFiles(Path.GetFullPath(firmware), "*.cs", SearchOption.AllDirectories))
        {
            Assert.That(File.ReadAllText(source), Does.Not.Contain("-linux-gnu"), $"{source} names an architecture's library directory: that is board data");
        }
    }

    [TestCase(null)]
    [TestCase("")]
    [TestCase("usr/lib/c_icap")]
    [TestCase("/usr/lib/../etc")]
    [TestCase("/usr/lib/c icap")]
    [TestCase("/usr/lib/c_icap\nModule common evil.so")]
    [TestCase("/usr/lib/c_icap#")]
    public void A_board_with_a_bad_c_icap_modules_directory_is_refused(string? modules)
    {
        var json = """{"name":"b","interfaces":{"wan":"eth0","lan":"eth1","vpn":"wg0"},"hdd":null,"virusScan":{"memoryMegabytes":256,"icapModulesDirectory":MODULES}}"""
            .Replace("MODULES", modules is null ? "null" : System.Text.Json.JsonSerializer.Serialize(modules));
        var e = Assert.Throws<BoardDescriptionException>(() => BoardDescription.Parse(json, "board.json"));
        Assert.That(e!.Message, Does.Contain("virusScan.icapModulesDirectory"));
        if (modules is not null && modules.Any(c => c is ' ' or '\n' or '#'))
        {
            // the renderer's own guard refuses it too, should a board description reach it unvalidated
            var guard = Assert.Throws<UnsafeConfigValueException>(() => ServiceRenderer.Render(ServiceConfigTests.Valid() with { VirusScan = new VirusScanConfig(true) }, WithVirusScan(256, modules)));
            Assert.That(guard!.Field, Is.EqualTo("virusScan.icapModulesDirectory"));
        }
    }
}
