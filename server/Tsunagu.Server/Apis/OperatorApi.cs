
using Tsunagu.Protocol;
using Tsunagu.Server.Data;
using Tsunagu.Server.Push;
using Tsunagu.Server.Security;

namespace Tsunagu.Server.Apis;

/// <summary>The operator's API: the device management table, the fleet view, forced checks.</summary>
public static class OperatorApi
{
    public const string DefaultServiceConfig = "default";

    public static void MapOperatorApi(this IEndpointRouteBuilder app)
    {
        var api = app.MapGroup(Routes.Units).AddEndpointFilter<RequireOperator>();
        api.MapGet("", (TsunaguStore store, string? pattern, string? state) =>
            Results.Ok(store.ListUnits(pattern, state).Select(ToView).ToList()));
        api.MapGet("/{mac}", (string mac, TsunaguStore store) =>
            MacAddress.TryNormalize(mac, out var m) && store.GetUnit(m) is { } unit
                ? Results.Ok(ToView(unit))
                : Problems.NotFound($"unit {mac} is not registered"));
        api.MapPost("", Register);
        api.MapPost("/check", ForceCheck);
        api.MapPut("/{mac}/service-config", AssignServiceConfig);
    }

    public static UnitView ToView(UnitRow u) => new(
        u.Mac, u.Serial, u.HardwareVersion, u.State, u.Pattern, u.TargetPattern,
        u.ConfigRevision is { } c ? (int)c : null, u.AppliedConfigRevision is { } r ? (int)r : null,
        u.LastSeen is null ? null : DateTimeOffset.Parse(u.LastSeen, System.Globalization.CultureInfo.InvariantCulture),
        u.LastError);

    private static IResult Register(RegisterUnitRequest request, HttpContext http, TsunaguStore store)
    {
        if (!MacAddress.TryNormalize(request.Mac, out var mac))
        {
            return Problems.BadRequest($"mac: '{request.Mac}' is not a MAC address");
        }
        if (string.IsNullOrWhiteSpace(request.Serial)) { return Problems.BadRequest("serial: required"); }
        if (string.IsNullOrWhiteSpace(request.HardwareVersion)) { return Problems.BadRequest("hardwareVersion: required"); }
        if (request.Isp is null || request.Isp.Method is not ("pppoe" or "dhcp" or "static"))
        {
            return Problems.BadRequest($"isp.method: '{request.Isp?.Method}' must be pppoe, dhcp or static");
        }
        if (request.Isp.Method == "pppoe" && (string.IsNullOrEmpty(request.Isp.Username) || string.IsNullOrEmpty(request.Isp.Password)))
        {
            return Problems.BadRequest("isp: a pppoe account needs username and password");
        }
        if (request.Isp.Method == "static" && !System.Net.IPAddress.TryParse(request.IpAddress ?? request.Isp.Address, out _))
        {
            return Problems.BadRequest("ipAddress: a static account needs an IP address");
        }
        var unit = new UnitRow
        {
            Mac = mac, Serial = request.Serial, HardwareVersion = request.HardwareVersion,
            IspMethod = request.Isp.Method, IspUsername = request.Isp.Username, IspPassword = request.Isp.Password,
            IpAddress = request.IpAddress ?? request.Isp.Address, Domain = request.Domain, Vpn = request.Vpn, GlobalIp = request.GlobalIp,
            Subscriber = request.Subscriber, TargetPattern = request.TargetPattern, State = UnitStates.Registered,
        };
        try
        {
            store.AddUnit(unit);
        }
        catch (StoreConflictException e)
        {
            return Problems.Conflict(e.Message);
        }
        if (store.GetServiceConfig(DefaultServiceConfig) is { } config)
        {
            store.AddUnitConfig(mac, config);
        }
        store.Audit(http.Caller().Subject, "unit.register", mac, request.Serial);
        return Results.Created($"{Routes.Units}/{mac}", ToView(store.GetUnit(mac)!));
    }

    private static async Task<IResult> ForceCheck(ForceCheckRequest request, HttpContext http, TsunaguStore store, IPushPublisher push,
        TimeProvider time, CancellationToken ct)
    {
        if (request.Importance is < 1 or > 5) { return Problems.BadRequest($"importance: {request.Importance} is outside 1..5"); }
        if ((request.Macs is null || request.Macs.Count == 0) && request.Pattern is null)
        {
            return Problems.BadRequest("select units: give macs, pattern, or both");
        }
        if (push.BrokerUri is null)
        {
            return Problems.Make(503, ProblemTypes.Conflict, "Push unavailable", "push is disabled on this server");
        }
        var selected = new List<string>();
        if (request.Macs is { Count: > 0 })
        {
            foreach (var text in request.Macs)
            {
                if (!MacAddress.TryNormalize(text, out var mac)) { return Problems.BadRequest($"macs: '{text}' is not a MAC address"); }
                var unit = store.GetUnit(mac);
                if (unit is null) { return Problems.NotFound($"unit {mac} is not registered"); }
                if (request.Pattern is null || unit.Pattern == request.Pattern) { selected.Add(mac); }
            }
        }
        else
        {
            selected.AddRange(store.ListUnits(request.Pattern).Select(u => u.Mac));
        }
        foreach (var mac in selected)
        {
            await push.PublishAsync(mac, new PushMessage(PushMessage.CheckNow, request.Importance, UnitCredentials.NewNonce(12), time.GetUtcNow()), ct);
        }
        store.Audit(http.Caller().Subject, "units.check", string.Join(",", selected), $"importance {request.Importance}");
        return Results.Ok(new ForceCheckResponse(selected));
    }

    private static IResult AssignServiceConfig(string mac, ServiceConfiguration config, HttpContext http, TsunaguStore store)
    {
        if (!MacAddress.TryNormalize(mac, out var m) || store.GetUnit(m) is null)
        {
            return Problems.NotFound($"unit {mac} is not registered");
        }
        try
        {
            ServiceConfigValidator.Validate(config);
        }
        catch (InvalidServiceConfigException e)
        {
            return Problems.BadRequest(e.Message);
        }
        var revision = store.AddUnitConfig(m, config);
        store.Audit(http.Caller().Subject, "unit.service-config", m, $"revision {revision}");
        return Results.Ok(new { mac = m, revision });
    }
}
