using Tsunagu.Protocol;
using Tsunagu.Server.Data;

namespace Tsunagu.Server.Units;

/// <summary>
/// A unit's row as the operator API and the subscriber's API show it (<see cref="UnitView"/>): the one mapping every
/// API that answers with units uses (the units API, a group's members, a subscriber's own units).
/// </summary>
public static class UnitViews
{
    public static UnitView View(UnitRow u) => new(
        u.Mac, u.Serial, u.HardwareVersion, u.State, u.Pattern, u.TargetPattern,
        u.ConfigRevision is { } c ? (int)c : null, u.AppliedConfigRevision is { } r ? (int)r : null,
        u.LastSeen is null ? null : DateTimeOffset.Parse(u.LastSeen, System.Globalization.CultureInfo.InvariantCulture),
        u.LastError, u.Online != 0,
        u.Inventory is null ? null : System.Text.Json.JsonSerializer.Deserialize(u.Inventory, ProtocolJson.Default.Inventory)?.Applications,
        u.Subscriber,
        u.VpnPublicKey is null ? null : new UnitVpnView(u.VpnPublicKey, u.VpnListenPort is { } port ? (int)port : null, u.VpnEndpointAddress,
            u.VpnReportedAt is null ? null : DateTimeOffset.Parse(u.VpnReportedAt, System.Globalization.CultureInfo.InvariantCulture)));
}
