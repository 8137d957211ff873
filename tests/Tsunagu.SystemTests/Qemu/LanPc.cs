using System.Globalization;
using System.Text.RegularExpressions;
using Tsunagu.IntegrationTests;

namespace Tsunagu.SystemTests.Qemu;

/// <summary>
/// The ISP lab's LAN PC (lan-pc-run.sh beside this file, image/lan-pc): a busybox guest whose one network port is a QEMU
/// socket link on loopback to a unit's LAN port (<see cref="QemuUnit.LanSocket"/>). It asks for a DHCP lease until the
/// unit's DHCP server gives it one and logs the lease on its console; <see cref="FetchAsync"/> resolves a name through
/// the lease's DNS server and fetches a page, as a browser does, on its shell (the second serial port).
/// </summary>
public sealed partial class LanPc : LabGuest
{
    /// <summary>The PC's MAC unless another is given (lan-pc-run.sh's default).</summary>
    public const string Mac = "52:54:00:1a:00:01";

    private LanPc(string directory, int port, string mac)
        : base("lan-pc-run.sh", new Dictionary<string, string>
        {
            ["LAN_PORT"] = port.ToString(CultureInfo.InvariantCulture),
            ["LAN_PC_DIR"] = ImageDirectory,
            ["MAC"] = mac,
        }, directory, "LAN PC")
    {
        LanEndpoint = $"127.0.0.1:{port.ToString(CultureInfo.InvariantCulture)}";
    }

    public static string ImageDirectory => Path.Combine(QemuLab.RepositoryRoot, "out", "lan-pc");

    /// <summary>Where the PC's port listens: the unit's LAN port connects here.</summary>
    public string LanEndpoint { get; }

    /// <summary>Fails the test (never skips it) when the guest's image is missing.</summary>
    public static void RequireImage() => RequireImage(ImageDirectory, "lan-pc-image");

    /// <summary>
    /// Boots the PC (its port's MAC <paramref name="mac"/>, default <see cref="Mac"/>); its port listens on a free loopback
    /// port (<see cref="LanEndpoint"/>) at once. Several PCs on one unit: <see cref="QemuUnit.LanSocket"/> names every endpoint.
    /// </summary>
    public static LanPc Start(QemuLab lab, string name, string mac = Mac)
    {
        RequireMac(mac);
        return new LanPc(QemuLab.NewGuestDirectory(lab, name), TestServer.FreePort(), mac);
    }

    /// <summary>Refuses a MAC that is not six lower-case hex pairs: it goes into QEMU's arguments.</summary>
    /// <exception cref="ArgumentException">Anything else.</exception>
    public static void RequireMac(string mac)
    {
        if (!MacAddress().IsMatch(mac)) { throw new ArgumentException($"not a MAC address the PC's port is given (aa:bb:cc:dd:ee:ff): {mac}", nameof(mac)); }
    }

    [GeneratedRegex(@"\A[0-9a-f]{2}(:[0-9a-f]{2}){5}\z")]
    private static partial Regex MacAddress();

    /// <summary>Waits for the PC's program to bring its port up and start asking for a lease.</summary>
    public Task WaitBootedAsync(TimeSpan timeout) =>
        WaitAsync(() => Console().Contains("lan-pc: up: eth0", StringComparison.Ordinal), timeout, "the PC asking for a DHCP lease");

    /// <summary>One lease the PC took (its DHCP client's script logs each one): the address and what came with it.</summary>
    public sealed record Lease(string Event, string Address, int PrefixLength, string Router, IReadOnlyList<string> Dns, string Server, int Seconds, string Domain);

    /// <summary>The leases the PC logged, in order.</summary>
    public List<Lease> Leases() =>
        Console().Split('\n').Select(l => LeaseLine().Match(l)).Where(m => m.Success).Select(m => new Lease(
            m.Groups[1].Value, m.Groups[2].Value, int.Parse(m.Groups[3].Value, CultureInfo.InvariantCulture), m.Groups[4].Value,
            m.Groups[5].Value.Split(',', StringSplitOptions.RemoveEmptyEntries), m.Groups[6].Value,
            int.Parse(m.Groups[7].Value, CultureInfo.InvariantCulture), m.Groups[8].Value.Trim())).ToList();

    /// <summary>Waits for the PC's first lease and returns it.</summary>
    public async Task<Lease> WaitLeaseAsync(TimeSpan timeout)
    {
        await WaitAsync(() => Leases().Count > 0, timeout, "DHCP lease");
        return Leases()[0];
    }

    /// <summary>Refuses a URL that is not http[s]://HOST[:PORT][/PATH] with a path free of quotes and blanks: it goes into a shell command, in single quotes.</summary>
    /// <exception cref="ArgumentException">Anything else.</exception>
    public static void RequireFetchableUrl(string url)
    {
        if (!FetchableUrl().IsMatch(url))
        {
            throw new ArgumentException($"not a URL the PC's shell is given (http[s]://HOST[:PORT][/PATH], no quote or blank): {url}", nameof(url));
        }
    }

    /// <summary>
    /// The SHA-256 fingerprint (<c>openssl x509 -fingerprint -sha256</c>'s line) of the certificate that answers the PC's TLS
    /// connection to <paramref name="address"/>:443 for <paramref name="name"/>: the origin's own unless something on the
    /// way ended the session.
    /// </summary>
    public async Task<string> TlsPeerAsync(string address, string name)
    {
        RequireTlsPeer(address, name);
        return await ShellAsync($"lan-pc-tls-peer {address} {name}", TimeSpan.FromSeconds(60));
    }

    /// <summary>Refuses what <see cref="TlsPeerAsync"/> would put into the PC's shell command unless an IPv4 address and a host name.</summary>
    /// <exception cref="ArgumentException">Anything else, naming the argument.</exception>
    public static void RequireTlsPeer(string address, string name)
    {
        if (!System.Net.IPAddress.TryParse(address, out var ip) || ip.AddressFamily != System.Net.Sockets.AddressFamily.InterNetwork || ip.ToString() != address)
        {
            throw new ArgumentException($"lan-pc-tls-peer: not an IPv4 address: {address}", nameof(address));
        }
        if (!HostName().IsMatch(name)) { throw new ArgumentException($"lan-pc-tls-peer: not a host name: {name}", nameof(name)); }
    }

    [GeneratedRegex(@"\A[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?)*\z")]
    private static partial Regex HostName();

    /// <summary>What <c>lan-pc-fetch</c> saw: the exit code (0 fetched, 1 not resolved, 2 not fetched), the address and DNS server, the resolver's refusal, the page.</summary>
    public sealed record Fetch(int Exit, string? Address, string? Server, string? Refusal, string Page, string Output);

    /// <summary>Resolves the name of <paramref name="url"/> through the lease's DNS server and fetches the page, on the PC.</summary>
    /// <exception cref="ArgumentException"><paramref name="url"/> is not one <see cref="RequireFetchableUrl"/> takes.</exception>
    public async Task<Fetch> FetchAsync(string url, TimeSpan? timeout = null)
    {
        RequireFetchableUrl(url);
        // the echo before the exit line ends a page without a trailing newline, so the exit code is always a line of its own
        var output = await ShellAsync($"lan-pc-fetch '{url}'; rc=$?; echo; echo exit=$rc", timeout ?? TimeSpan.FromSeconds(90));
        var lines = output.Split('\n').ToList();
        var exit = lines.Count > 0 && lines[^1].StartsWith("exit=", StringComparison.Ordinal)
            ? int.Parse(lines[^1]["exit=".Length..], CultureInfo.InvariantCulture)
            : throw new IOException($"LAN PC: lan-pc-fetch said no exit code: {output}");
        lines.RemoveAt(lines.Count - 1);
        if (lines.Count > 0 && Resolved().Match(lines[0]) is { Success: true } resolved)
        {
            return new Fetch(exit, resolved.Groups[1].Value, resolved.Groups[2].Value, null, string.Join('\n', lines.Skip(1)).Trim(), output);
        }
        if (lines.Count > 0 && NotResolved().Match(lines[0]) is { Success: true } refused)
        {
            return new Fetch(exit, null, refused.Groups[1].Value, refused.Groups[2].Value, "", output);
        }
        return new Fetch(exit, null, null, null, "", output);
    }

    [GeneratedRegex(@"lan-pc: lease (bound|renew) address=(\S+)/(\d+) router=(\S*) dns=(\S*) server=(\S*) lease=(\d+) domain=(.*)$")]
    private static partial Regex LeaseLine();

    [GeneratedRegex(@"\Ahttps?://[A-Za-z0-9.:-]+(/[^'\s]*)?\z")]
    private static partial Regex FetchableUrl();

    [GeneratedRegex(@"^lan-pc: resolved \S+ address=(\S+) server=(\S+)$")]
    private static partial Regex Resolved();

    [GeneratedRegex(@"^lan-pc: not resolved \S+ server=(\S+) answer=(.+)$")]
    private static partial Regex NotResolved();
}
