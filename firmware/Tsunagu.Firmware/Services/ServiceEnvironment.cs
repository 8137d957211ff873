using Tsunagu.Hal;
using Tsunagu.Hal.Linux;

namespace Tsunagu.Firmware.Services;

/// <summary>
/// Where the rendered services live on this unit: the board (interface names, cache disk), a run directory
/// for pid files and logs (tmpfs on a unit) and a state directory on `data` for leases and the VPN key.
/// </summary>
public sealed record ServiceEnvironment(BoardDescription Board, string RunDirectory, string StateDirectory)
{
    public string Wan => Board.Interfaces.Wan;
    public string Lan => Board.Interfaces.Lan;
    public string Vpn => Board.Interfaces.Vpn;

    /// <summary>
    /// The interface pppd brings up for a PPPoE session on the WAN port (`ppp0`, fixed by pppd's `ifname`): on a PPPoE line
    /// the LAN's traffic leaves by it, not by <see cref="Wan"/>.
    /// </summary>
    public string WanPpp { get; init; } = PppoeWanOptions.InterfaceName(LinuxUnit.MainPppUnit);

    /// <summary>
    /// Every interface the WAN traffic may leave or enter by: the port (DHCP, static) and the PPP interface (PPPoE). The
    /// firewall names both, so the rules hold whichever method the link dials, without a new ruleset when it changes.
    /// </summary>
    public IReadOnlyList<string> WanInterfaces => Wan == WanPpp ? [Wan] : [Wan, WanPpp];

    /// <summary>The WireGuard private key: made on the unit, kept on `data`, never sent anywhere.</summary>
    public string VpnKeyFile => Path.Combine(StateDirectory, "wireguard.key");

    /// <summary>squid's port for clients that name it as their proxy, and for the unit's own cache manager queries.</summary>
    public int CachePort { get; init; } = 3128;

    /// <summary>squid's intercept port: the firewall redirects the LAN's HTTP (tcp/80) here.</summary>
    public int InterceptPort { get; init; } = 3129;

    /// <summary>Where squid logs each request (squid's native format), or null for no access log (a unit: the cache manager's counters are the statistics).</summary>
    public string? CacheAccessLog { get; init; }

    /// <summary>c-icap's port on the loopback, where squid sends downloads to be checked.</summary>
    public int IcapPort { get; init; } = 1344;

    /// <summary>ClamAV's signature database on `data`: the signature bundles installed as update programs go here.</summary>
    public string SignatureDirectory => Path.Combine(StateDirectory, "clamav");

    /// <summary>
    /// Whether <see cref="SignatureDirectory"/> holds a signature database (a file named as
    /// <see cref="Protocol.Bundles.SignatureDatabases.IsName"/> says), looked at each time it is asked.
    /// </summary>
    public bool SignaturesInstalled => SignatureDatabaseFiles().Any();

    /// <summary>
    /// Whether virus checking can run on the signatures installed: there is a database (clamd does not start without one,
    /// and the image carries none, so virus checking waits for its first signatures: <see cref="ServiceRenderer.VirusScanWaits"/>)
    /// and the checker did not fail to start on exactly this set (<see cref="RefusedSignaturesFile"/>; a new database
    /// makes it try again).
    /// </summary>
    public bool SignaturesUsable => SignatureSet() is { } set && (!File.Exists(RefusedSignaturesFile) || File.ReadAllText(RefusedSignaturesFile).Trim() != set);

    /// <summary>The signature set the checker failed to start on (<see cref="SignatureSet"/>), on `data` beside the databases.</summary>
    public string RefusedSignaturesFile => Path.Combine(StateDirectory, "clamav-refused");

    /// <summary>The signature set the checker last ran on healthy (<see cref="SignatureSet"/>): another set is new to it.</summary>
    public string StartedSignaturesFile => Path.Combine(StateDirectory, "clamav-started");

    /// <summary>
    /// What identifies the installed signature set: a SHA-256 of each database's name, size and modification time (an
    /// install writes a new file), or null without a database.
    /// </summary>
    public string? SignatureSet()
    {
        var files = SignatureDatabaseFiles().Select(f => new FileInfo(f)).OrderBy(f => f.Name, StringComparer.Ordinal).ToList();
        if (files.Count == 0) { return null; }
        var text = string.Join("\n", files.Select(f => $"{f.Name} {f.Length} {f.LastWriteTimeUtc.Ticks}"));
        return Convert.ToHexStringLower(System.Security.Cryptography.SHA256.HashData(System.Text.Encoding.UTF8.GetBytes(text)));
    }

    private IEnumerable<string> SignatureDatabaseFiles() =>
        Directory.Exists(SignatureDirectory)
            ? Directory.EnumerateFiles(SignatureDirectory).Where(f => Protocol.Bundles.SignatureDatabases.IsName(Path.GetFileName(f)))
            : [];

    /// <summary>clamd's control socket (scans from c-icap, RELOAD after new signatures).</summary>
    public string ClamdSocket => Path.Combine(RunDirectory, "clamd.sock");

    /// <summary>
    /// Where the content filter's category lists are (the installed application <see cref="Protocol.FilterCategories.Application"/>'s
    /// tree), or null when the unit has none.
    /// </summary>
    public string? FilterListDirectory { get; init; }

    /// <summary>The cache directory on the HDD, or null when the board has none.</summary>
    public string? CacheDirectory => Board.Hdd is { } hdd ? Path.Combine(hdd.MountPoint, "squid") : null;

    /// <summary>
    /// The cache directory while virus checking runs, or null without an HDD: squid checks a response before it stores it
    /// and serves a stored object unchecked, so objects stored while nothing checked (virus checking off, or waiting for its
    /// first signatures) are kept apart and never served once checking runs (<see cref="ServiceRenderer.StoresChecked"/>).
    /// </summary>
    public string? CheckedCacheDirectory => Board.Hdd is { } hdd ? Path.Combine(hdd.MountPoint, "squid-checked") : null;
}
