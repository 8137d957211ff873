using System.Diagnostics;

namespace Tsunagu.UnitTests.Hal;

/// <summary>
/// The image's udhcpc event script (rootfs/overlay/etc/udhcpc.script), run by the shell against a fake `ip` that records
/// its calls and keeps the port's address: a lease bound replaces the port's addresses; a renewal of the address the port
/// has keeps it (removing it would make the kernel drop every connection masqueraded through it); a renewal with another
/// address replaces it; the name servers go where the supervisor says, or nowhere.
/// </summary>
public class UdhcpcScriptTests
{
    private string _dir = "";

    [SetUp]
    public void CreateDirectory()
    {
        _dir = Path.Combine(Path.GetTempPath(), "tsunagu-udhcpc-" + Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(Path.Combine(_dir, "bin"));
        // `ip -4 addr show dev IF` prints the address kept in ./address as iproute2 does; `addr flush` empties it, `addr add` sets it
        BoardAndRunnerTests.FakeTool(Path.Combine(_dir, "bin"), "ip", $$"""
            echo "ip $*" >> '{{_dir}}/calls'
            case "$*" in
                "-4 addr show dev "*) [ -s '{{_dir}}/address' ] && printf '2: eth0: <UP>\n    inet %s brd 10.65.0.255 scope global eth0\n' "$(cat '{{_dir}}/address')" ;;
                "-4 addr flush dev "*) : > '{{_dir}}/address' ;;
                "addr add "*) echo "$3" > '{{_dir}}/address' ;;
            esac
            exit 0
            """);
    }

    [TearDown]
    public void RemoveDirectory() => Directory.Delete(_dir, recursive: true);

    private string Resolv => Path.Combine(_dir, "resolv.conf");
    private string State => Path.Combine(_dir, "dhcp.state");

    /// <summary>Runs the script for <paramref name="evt"/> with a lease of <paramref name="address"/>/24; returns the `ip` calls it made.</summary>
    private List<string> Run(string evt, string address, string? resolvConf = null)
    {
        var calls = Path.Combine(_dir, "calls");
        File.WriteAllText(calls, "");
        var start = new ProcessStartInfo("sh", [Path.Combine(BoardAndRunnerTests.RepositoryRoot(), "rootfs", "overlay", "etc", "udhcpc.script"), evt])
        {
            RedirectStandardOutput = true, RedirectStandardError = true,
            Environment =
            {
                ["PATH"] = Path.Combine(_dir, "bin") + ":/usr/bin:/bin",
                ["interface"] = "eth0", ["ip"] = address, ["mask"] = "24", ["router"] = "10.65.0.1", ["dns"] = "192.0.2.53 192.0.2.54",
                ["TSUNAGU_DHCP_STATE"] = State, ["TSUNAGU_RESOLV_CONF"] = resolvConf ?? Resolv,
            },
        };
        using var script = Process.Start(start)!;
        var err = script.StandardError.ReadToEnd();
        script.WaitForExit();
        Assert.That(script.ExitCode, Is.Zero, err);
        return [.. File.ReadAllLines(calls)];
    }

    [Test]
    public void A_bound_lease_replaces_the_ports_addresses_and_sets_the_route_name_servers_and_state()
    {
        var calls = Run("bound", "10.65.0.112");
        Assert.That(calls, Is.EqualTo(new[]
        {
            "ip -4 addr flush dev eth0", "ip addr add 10.65.0.112/24 dev eth0", "ip link set eth0 up", "ip route replace default via 10.65.0.1 dev eth0",
        }));
        Assert.That(File.ReadAllText(Resolv), Is.EqualTo("nameserver 192.0.2.53\nnameserver 192.0.2.54\n"));
        Assert.That(File.ReadAllText(State), Is.EqualTo("bound 10.65.0.112\n"));
    }

    [Test]
    public void A_renewal_of_the_address_the_port_has_keeps_it()
    {
        Run("bound", "10.65.0.112");
        var calls = Run("renew", "10.65.0.112");
        Assert.That(calls, Has.None.Contains("flush").And.None.Contains("addr add"), "the address is never taken away");
        Assert.That(calls, Is.EqualTo(new[] { "ip -4 addr show dev eth0", "ip link set eth0 up", "ip route replace default via 10.65.0.1 dev eth0" }));
        Assert.That(File.ReadAllText(Path.Combine(_dir, "address")).Trim(), Is.EqualTo("10.65.0.112/24"));
        Assert.That(File.ReadAllText(State), Is.EqualTo("renew 10.65.0.112\n"));
    }

    [Test]
    public void A_renewal_with_another_address_replaces_it()
    {
        Run("bound", "10.65.0.112");
        var calls = Run("renew", "10.65.0.113");
        Assert.That(calls, Does.Contain("ip -4 addr flush dev eth0").And.Contain("ip addr add 10.65.0.113/24 dev eth0"));
        Assert.That(File.ReadAllText(Path.Combine(_dir, "address")).Trim(), Is.EqualTo("10.65.0.113/24"));
    }

    [Test]
    public void An_empty_resolv_conf_setting_leaves_the_name_servers_alone()
    {
        Run("bound", "10.65.0.112", resolvConf: "");
        Assert.That(File.Exists(Resolv), Is.False);
        Assert.That(File.ReadAllText(State), Is.EqualTo("bound 10.65.0.112\n"), "the state is still recorded");
    }
}
