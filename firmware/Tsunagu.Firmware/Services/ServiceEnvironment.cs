using Tsunagu.Hal;

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

    /// <summary>The WireGuard private key: made on the unit, kept on `data`, never sent anywhere.</summary>
    public string VpnKeyFile => Path.Combine(StateDirectory, "wireguard.key");

    /// <summary>The cache directory on the HDD, or null when the board has none.</summary>
    public string? CacheDirectory => Board.Hdd is { } hdd ? Path.Combine(hdd.MountPoint, "squid") : null;
}
