using Tsunagu.Protocol;
using Tsunagu.Server.Apis;
using Tsunagu.Server.Data;
using Tsunagu.Server.Push;

namespace Tsunagu.Server.Units.Registration;

/// <summary>
/// Registration of units into the device management table (patent fig. 6), for the operator API and the console alike:
/// the rules a registration must meet, the row with its first service configuration and its audit entry (one
/// transaction), and the unit's broker account.
/// </summary>
public sealed class UnitRegistration(TsunaguStore store, IPushPublisher push, ILogger<UnitRegistration> log)
{
    /// <summary>The named service configuration a newly registered unit gets as its first revision.</summary>
    public const string DefaultServiceConfig = "default";

    /// <summary>
    /// Name servers as an operator types them into one CSV cell or form field: addresses separated by spaces, commas or
    /// semicolons (a tab or a line feed separates nothing: it stays in the address and the grammar refuses it). Null
    /// when there is none. Each address is checked by <see cref="WanAccountGrammar"/> in <see cref="ValidateAsync"/>.
    /// </summary>
    public static IReadOnlyList<string>? NameServers(string? text) =>
        text?.Split([' ', ',', ';'], StringSplitOptions.RemoveEmptyEntries) is { Length: > 0 } list ? list : null;

    /// <summary>Checks a registration; returns the row to insert or the error naming the field.</summary>
    public static async Task<(UnitRow? Row, string? Error)> ValidateAsync(RegisterUnitRequest request, TsunaguStore store, CancellationToken ct = default)
    {
        if (!MacAddress.TryNormalize(request.Mac, out var mac)) { return (null, $"mac: '{InputRules.Quote(request.Mac)}' is not a MAC address"); }
        if (!InputRules.IsText(request.Serial, 64)) { return (null, "serial: required; " + InputRules.Text("serial", 64)); }
        if (!InputRules.IsText(request.HardwareVersion, 64)) { return (null, "hardwareVersion: required; " + InputRules.Text("hardwareVersion", 64)); }
        if (!InputRules.IsOptionalText(request.Isp?.Username, 128)) { return (null, InputRules.Text("isp.username", 128)); }
        if (!InputRules.IsOptionalText(request.Isp?.Password, 128)) { return (null, InputRules.Text("isp.password", 128)); }
        if (request.Domain is not null && !InputRules.IsDomainName(request.Domain)) { return (null, $"domain: '{InputRules.Quote(request.Domain)}' is not a DNS name"); }
        if (!InputRules.IsOptionalText(request.Vpn, 128)) { return (null, InputRules.Text("vpn", 128)); }
        if (request.Subscriber is not null && !AccountsApi.IsAccountName(request.Subscriber)) { return (null, "subscriber: at most 64 printable characters"); }
        if (request.TargetPattern is not null && !InputRules.IsIdentifier(request.TargetPattern)) { return (null, InputRules.Identifier("targetPattern")); }
        if (request.Isp is null || request.Isp.Method is not ("pppoe" or "dhcp" or "static"))
        {
            return (null, $"isp.method: '{InputRules.Quote(request.Isp?.Method)}' must be pppoe, dhcp or static");
        }
        if (request.Isp.Method == "pppoe" && (string.IsNullOrEmpty(request.Isp.Username) || string.IsNullOrEmpty(request.Isp.Password)))
        {
            return (null, "isp: a pppoe account needs username and password");
        }
        var address = request.IpAddress ?? request.Isp.Address;
        if (request.Isp.Method == "static" && address is null) { return (null, "ipAddress: a static account needs an IP address"); }
        // the grammar the unit applies before the account reaches pppd, ip or resolv.conf; a static account's address is
        // the unit's address (IPv4, optional prefix length), another method's address is checked as the unit's address below
        var account = request.Isp with { Address = request.Isp.Method == "static" ? address : null };
        if (WanAccountGrammar.Problem(account) is { } problem) { return (null, "isp." + problem); }
        if (request.Isp.Method != "static" && (request.Isp.Gateway is not null || request.Isp.Dns is { Count: > 0 }))
        {
            return (null, "isp: gateway and dns belong to a static account");
        }
        // a static account's address is IPv4 with an optional prefix length (checked by the grammar above)
        if (address is not null && request.Isp.Method != "static" && !ServiceConfigValidator.IsAddress(address)) { return (null, $"ipAddress: '{InputRules.Quote(address)}' is not an IP address"); }
        if (request.GlobalIp is not null && !ServiceConfigValidator.IsAddress(request.GlobalIp)) { return (null, $"globalIp: '{InputRules.Quote(request.GlobalIp)}' is not an IP address"); }
        if (request.Domain is not null && !ServiceConfigValidator.IsDomainName(request.Domain)) { return (null, $"domain: {ServiceConfigValidator.Show(request.Domain)} is not a domain name"); }
        if (request.TargetPattern is not null && await store.Catalogue.GetPatternAsync(request.TargetPattern, ct) is not { Status: PatternStatus.Verified })
        {
            return (null, $"targetPattern: '{request.TargetPattern}' is not a verified pattern");
        }
        return (new UnitRow
        {
            Mac = mac, Serial = request.Serial.Trim(), HardwareVersion = request.HardwareVersion.Trim(),
            IspMethod = request.Isp.Method, IspUsername = request.Isp.Username, IspPassword = request.Isp.Password,
            IspGateway = request.Isp.Gateway, IspDns = request.Isp.Dns is { Count: > 0 } dns ? string.Join(',', dns) : null,
            IpAddress = address, Domain = request.Domain, Vpn = request.Vpn, GlobalIp = request.GlobalIp,
            Subscriber = request.Subscriber, TargetPattern = request.TargetPattern, State = UnitStates.Registered,
        }, null);
    }

    /// <summary>
    /// Registers one unit: validation, the row, the default service configuration, the broker account, the audit
    /// entry. Returns the stored unit, or the error (conflict: already registered).
    /// </summary>
    public async Task<(UnitRow? Unit, string? Error, bool Conflict)> RegisterAsync(RegisterUnitRequest request, string actor, CancellationToken ct)
    {
        var (unit, error) = await ValidateAsync(request, store, ct);
        if (unit is null) { return (null, error, false); }
        try
        {
            // the unit, its first configuration and the audit entry: one transaction
            await store.Units.AddUnitsAsync([unit], await store.ServiceConfigs.GetServiceConfigAsync(DefaultServiceConfig, ct), actor, "unit.register", unit.Mac, unit.Serial, ct: ct);
        }
        catch (StoreConflictException e)
        {
            return (null, e.Message, true);
        }
        await EnsureBrokerAccountAsync(unit.Mac, ct);
        return ((await store.Units.GetUnitAsync(unit.Mac, ct))!, null, false);
    }

    /// <summary>Checks every row of a CSV device management table against the registration rules; writes nothing.</summary>
    public async Task<BulkCheck> CheckBulkAsync(string text, CancellationToken ct = default) => await DeviceTable.CheckAsync(text, store, ct);

    /// <summary>Registers every unit of a checked table (all rows valid), with default configuration and broker accounts.</summary>
    public async Task CommitBulkAsync(BulkCheck check, string actor, CancellationToken ct)
    {
        if (check.FileError is not null || check.Rows.Any(r => r.Error is not null))
        {
            throw new InvalidOperationException("a device management table with errors cannot be registered");
        }
        // every unit, its first configuration and the audit entry in one transaction: a unit registered meanwhile
        // (another import) makes the whole table fail with nothing written
        await store.Units.AddUnitsAsync(check.Valid, await store.ServiceConfigs.GetServiceConfigAsync(DefaultServiceConfig, ct), actor, "units.register-bulk", null, $"{check.Valid.Count} unit(s)", check.Tags, ct: ct);
        foreach (var unit in check.Valid)
        {
            await EnsureBrokerAccountAsync(unit.Mac, ct);
        }
    }

    /// <summary>
    /// The broker account is made at registration; when the broker is down the registration still stands and the
    /// account is made when the server next connects to the broker (it provisions every registered unit then).
    /// </summary>
    public async Task EnsureBrokerAccountAsync(string mac, CancellationToken ct)
    {
        try
        {
            await push.EnsureUnitAccountAsync(mac, ct);
        }
        catch (PushException e)
        {
            log.LogWarning("unit {Mac}: broker account not made now ({Error}); it is made when the server reconnects to the broker", mac, e.Message);
        }
    }
}
