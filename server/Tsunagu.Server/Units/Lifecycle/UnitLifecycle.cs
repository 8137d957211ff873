using Tsunagu.Protocol;
using Tsunagu.Server.Apis;
using Tsunagu.Server.Data;
using Tsunagu.Server.Push;
using Tsunagu.Server.Units.Registration;

namespace Tsunagu.Server.Units.Lifecycle;

/// <summary>A unit's row of the device management table as the operator reads it; the ISP password only as set or not.</summary>
public sealed record UnitRecordView(string Mac, string Serial, string HardwareVersion, string IspMethod, string? IspUsername, bool IspPasswordSet,
    string? IpAddress, string? Domain, string? Vpn, string? GlobalIp, string? Subscriber, string? TargetPattern, string State, long Revision,
    string? DecommissionedAt, string? ReplacedBy, string? IspGateway = null, IReadOnlyList<string>? IspDns = null, long SettingsRevision = 1);

/// <summary>
/// An edit of a unit's row: a field left out (null) stays as it is; an empty string clears an optional field. The target
/// pattern has its own operation (PUT target-pattern). <see cref="IspDns"/>: an empty list clears the name servers.
/// </summary>
public sealed record UnitEditRequest(string? Serial = null, string? HardwareVersion = null, string? IspMethod = null, string? IspUsername = null,
    string? IspPassword = null, string? IpAddress = null, string? Domain = null, string? Vpn = null, string? GlobalIp = null, string? Subscriber = null,
    string? IspGateway = null, IReadOnlyList<string>? IspDns = null);

public sealed record DecommissionRequest(string? Reason = null);

/// <summary>The new unit of a replacement (RMA): its factory identity; the rest comes from the unit it replaces.</summary>
public sealed record ReplaceUnitRequest(string Mac, string Serial, string? HardwareVersion = null);

/// <summary>Moves the subscriber to unit <see cref="To"/>; <see cref="WithConfig"/> (default true) copies their service configuration too.</summary>
public sealed record TransferSubscriberRequest(string To, bool? WithConfig = null);

public sealed record UnitRevisionView(long Revision, string At, string Actor, string Action, IReadOnlyList<UnitFieldChange> Changes);

public sealed record SecretRotationResult(string KeyId, int Resealed);

/// <summary>
/// The operations on the device management table's rows after registration: edit (with revisions), decommission,
/// delete, replace (RMA), subscriber transfer. The API, the CLI (through the API) and the console use these.
/// </summary>
public sealed class UnitLifecycle(TsunaguStore store, IPushPublisher push, UnitRegistration registration, ILogger<UnitLifecycle> log)
{
    public static UnitRecordView View(UnitRow u) => new(u.Mac, u.Serial, u.HardwareVersion, u.IspMethod, u.IspUsername,
        u.IspPasswordSealed is not null || u.IspPassword is not null, u.IpAddress, u.Domain, u.Vpn, u.GlobalIp, u.Subscriber, u.TargetPattern,
        u.State, u.Revision, u.DecommissionedAt, u.ReplacedBy, u.IspGateway, u.DnsList, u.SettingsRevision);

    private static string? Merge(string? edit, string? current) => edit is null ? current : edit.Length == 0 ? null : edit;

    /// <summary>
    /// Checks an edit against the registration rules (the merged row must be one that could be registered) and writes
    /// it when the row is still at <paramref name="expected"/>. Returns the error (400) or the new row.
    /// </summary>
    /// <exception cref="StaleRevisionException">The row changed since <paramref name="expected"/>; nothing was written.</exception>
    /// <exception cref="UnitNotFoundException">No such unit.</exception>
    /// <exception cref="StoreConflictException">The unit is decommissioned.</exception>
    public async Task<(UnitRow? Row, string? Error)> EditAsync(string mac, long expected, UnitEditRequest edit, string actor, CancellationToken ct = default)
    {
        var before = await store.Units.GetUnitAsync(mac, ct) ?? throw new UnitNotFoundException(mac);
        if (before.DecommissionedAt is not null)
        {
            throw new StoreConflictException($"unit {mac} was decommissioned at {before.DecommissionedAt}; its row is kept for audit and cannot change");
        }
        if (before.Revision != expected) { throw new StaleRevisionException(mac, expected, before.Revision); }
        var password = edit.IspPassword is null ? store.Lifecycle.IspPasswordOf(before) : edit.IspPassword.Length == 0 ? null : edit.IspPassword;
        var method = edit.IspMethod ?? before.IspMethod;
        var ip = Merge(edit.IpAddress, before.IpAddress);
        var request = new RegisterUnitRequest(mac, edit.Serial ?? before.Serial, edit.HardwareVersion ?? before.HardwareVersion,
            new WanAccount(method, Merge(edit.IspUsername, before.IspUsername), password, ip, Merge(edit.IspGateway, before.IspGateway),
                edit.IspDns is null ? before.DnsList : edit.IspDns.Count == 0 ? null : edit.IspDns), ip,
            Merge(edit.Domain, before.Domain), Merge(edit.Vpn, before.Vpn), Merge(edit.GlobalIp, before.GlobalIp), null, Merge(edit.Subscriber, before.Subscriber));
        var (after, error) = await UnitRegistration.ValidateAsync(request, store, ct);
        if (after is null) { return (null, error); }
        var passwordChanged = edit.IspPassword is not null && password != store.Lifecycle.IspPasswordOf(before);
        after.IspPasswordSealed = passwordChanged || before.IspPasswordSealed is null ? store.Secrets.Seal(mac, UnitLifecycleStore.IspPasswordField, password) : before.IspPasswordSealed;
        var changes = new List<UnitFieldChange>();
        void Compare(string field, string? from, string? to) { if (from != to) { changes.Add(new(field, from, to)); } }
        Compare("serial", before.Serial, after.Serial);
        Compare("hardwareVersion", before.HardwareVersion, after.HardwareVersion);
        Compare("isp.method", before.IspMethod, after.IspMethod);
        Compare("isp.username", before.IspUsername, after.IspUsername);
        if (passwordChanged) { changes.Add(new(UnitLifecycleStore.IspPasswordField, null, null, Secret: true)); }
        Compare("ipAddress", before.IpAddress, after.IpAddress);
        Compare("isp.gateway", before.IspGateway, after.IspGateway);
        Compare("isp.dns", before.IspDns, after.IspDns);
        // what the unit's settings carry of its WAN account: a change makes the unit refetch them
        var wanChanged = changes.Any(x => x.Field is "isp.method" or "isp.username" or UnitLifecycleStore.IspPasswordField or "ipAddress" or "isp.gateway" or "isp.dns");
        Compare("domain", before.Domain, after.Domain);
        Compare("vpn", before.Vpn, after.Vpn);
        Compare("globalIp", before.GlobalIp, after.GlobalIp);
        Compare("subscriber", before.Subscriber, after.Subscriber);
        if (changes.Count == 0) { return (before, null); }
        await store.Lifecycle.EditUnitAsync(after, expected, changes, actor, wanChanged, ct);
        return (await store.Units.GetUnitAsync(mac, ct), null);
    }

    /// <summary>Decommissions the unit and revokes it on the broker (its session is dropped, its password refused).</summary>
    public async Task<UnitRow> DecommissionAsync(string mac, long? expected, string actor, string? reason, CancellationToken ct)
    {
        var row = await store.Lifecycle.DecommissionAsync(mac, expected, actor, reason, ct);
        await RevokeOnBrokerAsync(mac);
        return row;
    }

    /// <summary>Replaces <paramref name="oldMac"/> by a new unit (RMA): one transaction, then the broker account changes.</summary>
    public async Task<(UnitRow? Row, string? Error)> ReplaceAsync(string oldMac, long? expected, ReplaceUnitRequest request, string actor, CancellationToken ct)
    {
        if (request is null) { return (null, "body: a JSON object with mac and serial is required"); }
        if (!MacAddress.TryNormalize(request.Mac, out var mac)) { return (null, $"mac: '{InputRules.Quote(request.Mac)}' is not a MAC address"); }
        if (!InputRules.IsText(request.Serial, 64)) { return (null, "serial: required; " + InputRules.Text("serial", 64)); }
        if (request.HardwareVersion is not null && !InputRules.IsText(request.HardwareVersion, 64)) { return (null, InputRules.Text("hardwareVersion", 64)); }
        var old = await store.Units.GetUnitAsync(oldMac, ct) ?? throw new UnitNotFoundException(oldMac);
        var replacement = new UnitRow
        {
            Mac = mac, Serial = request.Serial.Trim(), HardwareVersion = request.HardwareVersion?.Trim() ?? old.HardwareVersion,
            IspMethod = old.IspMethod, IspUsername = old.IspUsername, IpAddress = old.IpAddress, Domain = old.Domain, Vpn = old.Vpn,
            IspGateway = old.IspGateway, IspDns = old.IspDns,
            GlobalIp = old.GlobalIp, Subscriber = old.Subscriber, TargetPattern = old.TargetPattern, State = UnitStates.Registered,
            // sealed for the new unit's MAC: a sealed value opens only for the unit it was sealed for
            IspPasswordSealed = store.Secrets.Seal(mac, UnitLifecycleStore.IspPasswordField, store.Lifecycle.IspPasswordOf(old)),
        };
        var fallback = await store.ServiceConfigs.GetServiceConfigAsync(UnitRegistration.DefaultServiceConfig, ct) is { } config
            ? System.Text.Json.JsonSerializer.Serialize(config, ProtocolJson.Default.ServiceConfiguration)
            : null;
        var row = await store.Lifecycle.ReplaceUnitAsync(oldMac, expected, replacement, fallback, actor, ct);
        // after the commit: not on the request's token, so an operator hanging up skips neither this nor the revoke
        await registration.EnsureBrokerAccountAsync(mac, CancellationToken.None);
        await RevokeOnBrokerAsync(oldMac);
        return (row, null);
    }

    /// <summary>
    /// Deletes a row that never reached the server (<see cref="UnitLifecycleStore.DeleteUnitAsync"/>: at <paramref name="expected"/>
    /// when given, checked in its transaction), then revokes its broker account as a decommission does: the account its
    /// registration made, and any short-lived password a host session set meanwhile, no longer let it reach the broker.
    /// </summary>
    public async Task DeleteAsync(string mac, long? expected, string actor, CancellationToken ct)
    {
        await store.Lifecycle.DeleteUnitAsync(mac, expected, actor, ct);
        await RevokeOnBrokerAsync(mac);
    }

    /// <summary>
    /// After the change committed: not on the request's token (an operator hanging up then must not skip it); each broker
    /// command has its own timeout (10 s).
    /// </summary>
    private async Task RevokeOnBrokerAsync(string mac)
    {
        try
        {
            await push.RevokeUnitAsync(mac, CancellationToken.None);
        }
        catch (PushException e)
        {
            // the server refuses the unit everywhere already; the broker account is disabled when the server next connects
            // the server refuses a unit without a row too; a password set for it is replaced at the broker's next expiry sweep
            log.LogWarning("unit {Mac}: decommissioned or deleted, but its broker account was not disabled now ({Error}); it is when the server reconnects to the broker", mac, e.Message);
        }
    }
}
