using Tsunagu.Hal;
using Tsunagu.Hal.Linux;

namespace Tsunagu.SystemTests;

/// <summary>
/// Three network namespaces made by the test, wired by veth pairs created inside them (never in the host's
/// namespace): a LAN client, the router, and an "internet" host that has no route back to the LAN, so only
/// masqueraded traffic gets answers. Private addresses only; everything is deleted in <see cref="DisposeAsync"/>.
/// </summary>
public sealed class Lab : IAsyncDisposable
{
    public const string InternetAddress = "10.77.0.1";
    public const string BlockedAddress = "10.77.0.66";
    public const string RouterWanAddress = "10.77.0.2";
    public const string ClientMac = "02:00:00:00:00:09";
    public const string StaticLeaseAddress = "192.168.77.9";
    public const string LanAddress = "192.168.77.1";

    private static readonly ProcessCommandRunner Host = new();
    private readonly List<string> _namespaces = [];

    private Lab(string id, string root)
    {
        Id = id;
        Root = root;
        Router = $"tsg-{id}-r";
        Client = $"tsg-{id}-c";
        Internet = $"tsg-{id}-i";
        Board = new BoardDescription("lab", new BoardInterfaces($"w{id}", $"l{id}", $"v{id}"), new BoardHdd(Path.Combine(root, "hdd")));
        RouterCommands = PrefixCommandRunner.InNetworkNamespace(Host, Router);
    }

    public string Id { get; }
    public string Root { get; }
    public string Router { get; }
    public string Client { get; }
    public string Internet { get; }
    public string ClientInterface => $"c{Id}";
    public BoardDescription Board { get; }

    /// <summary>Runs commands inside the router's namespace: what the unit's own command runner would do.</summary>
    public ICommandRunner RouterCommands { get; }

    /// <summary>Fails the test (never skips it) when something the lab needs is missing.</summary>
    public static async Task RequireToolsAsync()
    {
        var uid = await Host.RunAsync(new CommandLine("id", "-u"), null, CancellationToken.None);
        if (uid.Output.Trim() != "0")
        {
            Assert.Fail($"the system tests create network namespaces and need root (running as uid {uid.Output.Trim()})");
        }
        string[] tools = ["ip", "nft", "dnsmasq", "wg", "wireguard-go", "squid", "udhcpc", "busybox", "sysctl", "setsid", "curl", "clamd", "clamdscan", "clamscan", "c-icap", "c-icap-client"];
        var missing = tools.Where(t => !Host.SearchPath.Any(d => File.Exists(Path.Combine(d, t)))).ToList();
        if (missing.Count > 0)
        {
            Assert.Fail($"missing tools: {string.Join(", ", missing)} (install the packages listed in .ci/run: APT_PACKAGES)");
        }
    }

    public static async Task<Lab> CreateAsync()
    {
        await RequireToolsAsync();
        var id = Guid.NewGuid().ToString("N")[..6];
        var root = Path.Combine(Path.GetTempPath(), $"tsunagu-lab-{id}");
        Directory.CreateDirectory(root);
        var lab = new Lab(id, root);
        try
        {
            foreach (var ns in new[] { lab.Router, lab.Client, lab.Internet })
            {
                await HostAsync("ip", "netns", "add", ns);
                lab._namespaces.Add(ns);
                await HostAsync("ip", "-n", ns, "link", "set", "lo", "up");
            }
            var (wan, lan) = (lab.Board.Interfaces.Wan, lab.Board.Interfaces.Lan);
            await HostAsync("ip", "-n", lab.Router, "link", "add", lan, "type", "veth", "peer", "name", lab.ClientInterface, "netns", lab.Client);
            await HostAsync("ip", "-n", lab.Router, "link", "add", wan, "type", "veth", "peer", "name", $"i{id}", "netns", lab.Internet);
            await HostAsync("ip", "-n", lab.Client, "link", "set", lab.ClientInterface, "address", ClientMac);
            await HostAsync("ip", "-n", lab.Client, "link", "set", lab.ClientInterface, "up");
            await HostAsync("ip", "-n", lab.Internet, "address", "add", $"{InternetAddress}/24", "dev", $"i{id}");
            await HostAsync("ip", "-n", lab.Internet, "address", "add", $"{BlockedAddress}/24", "dev", $"i{id}");
            await HostAsync("ip", "-n", lab.Internet, "link", "set", $"i{id}", "up");
            await HostAsync("ip", "-n", lab.Router, "address", "add", $"{RouterWanAddress}/24", "dev", wan);
            await HostAsync("ip", "-n", lab.Router, "link", "set", wan, "up");
            await HostAsync("ip", "-n", lab.Router, "route", "add", "default", "via", InternetAddress);
            return lab;
        }
        catch
        {
            await lab.DisposeAsync();
            throw;
        }
    }

    public static async Task<CommandResult> HostAsync(params string[] command)
    {
        var result = await Host.RunAsync(new CommandLine(command[0], command[1..]), null, CancellationToken.None);
        return result.EnsureSuccess("lab set-up");
    }

    public Task<CommandResult> InAsync(string ns, params string[] command) =>
        PrefixCommandRunner.InNetworkNamespace(Host, ns).RunAsync(new CommandLine(command[0], command[1..]),
            new CommandOptions { Timeout = TimeSpan.FromSeconds(20) }, CancellationToken.None);

    /// <summary>Starts a long-running program inside <paramref name="ns"/> (an origin server); the caller stops it.</summary>
    public IRunningCommand StartIn(string ns, params string[] command) =>
        PrefixCommandRunner.InNetworkNamespace(Host, ns).Start(new CommandLine(command[0], command[1..]), null);

    /// <summary>Gets a lease on the client with busybox udhcpc; returns "address router dns".</summary>
    public async Task<string> LeaseAsync()
    {
        var script = Path.Combine(Root, "udhcpc.sh");
        await File.WriteAllTextAsync(script, """
            #!/bin/sh
            case "$1" in
              bound|renew)
                ip address add "$ip/$mask" dev "$interface"
                ip route replace default via "$router"
                echo "LEASE $ip $router $dns"
                ;;
            esac
            """.Replace("\r", ""));
        File.SetUnixFileMode(script, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);
        var result = await InAsync(Client, "udhcpc", "-i", ClientInterface, "-n", "-q", "-f", "-t", "5", "-T", "1", "-s", script);
        result.EnsureSuccess("DHCP lease from the router");
        var line = result.Output.Split('\n').FirstOrDefault(l => l.StartsWith("LEASE ", StringComparison.Ordinal))
                   ?? throw new AssertionException($"udhcpc reported no lease: {result.Output} {result.Error}");
        return line["LEASE ".Length..].Trim();
    }

    public async ValueTask DisposeAsync()
    {
        foreach (var ns in Enumerable.Reverse(_namespaces))
        {
            await Host.RunAsync(new CommandLine("ip", "netns", "del", ns), null, CancellationToken.None);
        }
        if (Directory.Exists(Root)) { Directory.Delete(Root, recursive: true); }
    }
}
