using Microsoft.AspNetCore.Http.HttpResults;
using Tsunagu.Protocol;
using Tsunagu.Server.Data;
using Tsunagu.Server.Push;
using Tsunagu.Server.Security;
using Tsunagu.Server.Units.Lifecycle;

namespace Tsunagu.Server.Apis;

/// <summary>The operator's API: the device management table, the fleet view, forced checks.</summary>
public sealed record TargetPatternRequest(string? Pattern);
/// <summary>One service configuration revision of a unit, as the operator lists them.</summary>
public sealed record UnitConfigRevisionView(long Revision, string Status, string? Error, string Origin, string? CreatedAt, string? UpdatedAt);
/// <summary>The answer to an operator's new service configuration for a unit.</summary>
public sealed record UnitConfigAssigned(string Mac, long Revision, string Status, string? PushWarning);

public static class OperatorApi
{
    public const string DefaultServiceConfig = "default";

    public static void MapOperatorApi(this IEndpointRouteBuilder app)
    {
        var api = app.MapGroup(Routes.Units).AddEndpointFilter<RequireOperator>();
        api.MapGet("", Results<Ok<List<UnitView>>, ProblemHttpResult> (TsunaguStore store, string? pattern, string? state, string? app, string? version,
                DateTimeOffset? seenBefore, DateTimeOffset? seenAfter, bool? online) =>
            version is not null && app is null
                ? Problems.BadRequest("version: filtering by version needs app (the application whose version it is)")
                : TypedResults.Ok(store.QueryUnits(new UnitQuery(pattern, state, app, version, seenBefore, seenAfter, online)).Select(ToView).ToList()))
            .AllowRoles(OperatorRoles.Read);
        api.MapGet("/{mac}", Results<Ok<UnitView>, ProblemHttpResult> (string mac, TsunaguStore store) =>
            MacAddress.TryNormalize(mac, out var m) && store.GetUnit(m) is { } unit
                ? TypedResults.Ok(ToView(unit))
                : Problems.NotFound($"unit {mac} is not registered")).ProducesProblem(StatusCodes.Status404NotFound).AllowRoles(OperatorRoles.Read);
        api.MapPost("", Register).ProducesProblem(StatusCodes.Status409Conflict).AllowRoles(OperatorRoles.Administration);
        api.MapPost("/bulk", RegisterBulk).Accepts<string>("text/csv")
            .ProducesProblem(StatusCodes.Status409Conflict).ProducesProblem(StatusCodes.Status413PayloadTooLarge).WithMetadata(new Microsoft.AspNetCore.Mvc.RequestSizeLimitAttribute(MaxBulkBytes))
            .AllowRoles(OperatorRoles.Administration);
        api.MapPut("/{mac}/target-pattern", Results<Ok<UnitView>, ProblemHttpResult> (string mac, TargetPatternRequest r, TsunaguStore store, Catalogue.CatalogueService catalogue, HttpContext http) =>
            !MacAddress.TryNormalize(mac, out var m) || store.GetUnit(m) is null
                ? Problems.NotFound($"unit {mac} is not registered")
                : Problems.Guard(() =>
                {
                    catalogue.SetTargetPattern(m, r.Pattern);
                    store.Audit(http.Caller().Subject, "unit.target-pattern", m, r.Pattern ?? "none");
                    return TypedResults.Ok(ToView(store.GetUnit(m)!));
                })).ProducesProblem(StatusCodes.Status404NotFound).AllowRoles(OperatorRoles.Release);
        api.MapGet("/{mac}/service-config", Results<Ok<List<UnitConfigRevisionView>>, ProblemHttpResult> (string mac, TsunaguStore store) =>
            MacAddress.TryNormalize(mac, out var m) && store.GetUnit(m) is not null
                ? TypedResults.Ok(store.ListUnitConfigs(m).Select(c => new UnitConfigRevisionView(c.Revision, c.Status, c.Error, c.Origin, c.CreatedAt, c.UpdatedAt)).ToList())
                : Problems.NotFound($"unit {mac} is not registered")).ProducesProblem(StatusCodes.Status404NotFound).AllowRoles(OperatorRoles.Read);
        api.MapPost("/check", ForceCheck).ProducesProblem(StatusCodes.Status404NotFound).AllowRoles(OperatorRoles.Check);
        api.MapGet("/check/{id}", Results<Ok<ForceCheckStatus>, ProblemHttpResult> (string id, TsunaguStore store) =>
            id.Length is > 0 and <= 32 && id.All(char.IsAsciiHexDigitLower) && PushChecks.Status(store, id) is { } status
                ? TypedResults.Ok(status)
                : Problems.NotFound($"no forced check {id}")).ProducesProblem(StatusCodes.Status404NotFound).AllowRoles(OperatorRoles.Read);
        api.MapPut("/{mac}/service-config", AssignServiceConfig).ProducesProblem(StatusCodes.Status404NotFound).ProducesProblem(StatusCodes.Status413PayloadTooLarge)
            .WithMetadata(new Microsoft.AspNetCore.Mvc.RequestSizeLimitAttribute(AccountsApi.MaxServiceConfigBytes)).AllowRoles(OperatorRoles.Help);
        app.MapUnitLifecycleApi();
    }

    public static UnitView ToView(UnitRow u) => new(
        u.Mac, u.Serial, u.HardwareVersion, u.State, u.Pattern, u.TargetPattern,
        u.ConfigRevision is { } c ? (int)c : null, u.AppliedConfigRevision is { } r ? (int)r : null,
        u.LastSeen is null ? null : DateTimeOffset.Parse(u.LastSeen, System.Globalization.CultureInfo.InvariantCulture),
        u.LastError, u.Online != 0,
        u.Inventory is null ? null : System.Text.Json.JsonSerializer.Deserialize(u.Inventory, ProtocolJson.Default.Inventory)?.Applications,
        u.Subscriber);

    /// <summary>Checks a registration; returns the row to insert or the error naming the field.</summary>
    public static (UnitRow? Row, string? Error) Validate(RegisterUnitRequest request, TsunaguStore store)
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
        if (request.Isp.Method == "static" && !ServiceConfigValidator.IsAddress(address))
        {
            return (null, "ipAddress: a static account needs an IP address");
        }
        if (address is not null && !ServiceConfigValidator.IsAddress(address)) { return (null, $"ipAddress: '{InputRules.Quote(address)}' is not an IP address"); }
        if (request.GlobalIp is not null && !ServiceConfigValidator.IsAddress(request.GlobalIp)) { return (null, $"globalIp: '{InputRules.Quote(request.GlobalIp)}' is not an IP address"); }
        if (request.Domain is not null && !ServiceConfigValidator.IsDomainName(request.Domain)) { return (null, $"domain: {ServiceConfigValidator.Show(request.Domain)} is not a domain name"); }
        if (request.TargetPattern is not null && store.GetPattern(request.TargetPattern) is not { Status: PatternStatus.Verified })
        {
            return (null, $"targetPattern: '{request.TargetPattern}' is not a verified pattern");
        }
        return (new UnitRow
        {
            Mac = mac, Serial = request.Serial.Trim(), HardwareVersion = request.HardwareVersion.Trim(),
            IspMethod = request.Isp.Method, IspUsername = request.Isp.Username, IspPassword = request.Isp.Password,
            IpAddress = address, Domain = request.Domain, Vpn = request.Vpn, GlobalIp = request.GlobalIp,
            Subscriber = request.Subscriber, TargetPattern = request.TargetPattern, State = UnitStates.Registered,
        }, null);
    }

    private static async Task<Results<Created<UnitView>, ProblemHttpResult>> Register(RegisterUnitRequest request, HttpContext http, TsunaguStore store, IPushPublisher push, ILogger<RegisterUnitRequest> log)
    {
        var (unit, error, conflict) = await RegisterAsync(request, http.Caller().Subject, store, push, log, http.RequestAborted);
        if (unit is null) { return conflict ? Problems.Conflict(error!) : Problems.BadRequest(error!); }
        return TypedResults.Created($"{Routes.Units}/{unit.Mac}", ToView(unit));
    }

    /// <summary>
    /// Registers one unit (API and console alike): validation, the row, the default service configuration, the
    /// broker account, the audit entry. Returns the stored unit, or the error (conflict: already registered).
    /// </summary>
    public static async Task<(UnitRow? Unit, string? Error, bool Conflict)> RegisterAsync(RegisterUnitRequest request, string actor,
        TsunaguStore store, IPushPublisher push, ILogger log, CancellationToken ct)
    {
        var (unit, error) = Validate(request, store);
        if (unit is null) { return (null, error, false); }
        try
        {
            // the unit, its first configuration and the audit entry: one transaction
            store.AddUnits([unit], store.GetServiceConfig(DefaultServiceConfig), actor, "unit.register", unit.Mac, unit.Serial);
        }
        catch (StoreConflictException e)
        {
            return (null, e.Message, true);
        }
        await EnsureBrokerAccountAsync(push, unit.Mac, log, ct);
        return (store.GetUnit(unit.Mac)!, null, false);
    }

    /// <summary>
    /// The broker account is made at registration; when the broker is down the registration still stands and the
    /// account is made when the server next connects to the broker (it provisions every registered unit then).
    /// </summary>
    public static async Task EnsureBrokerAccountAsync(IPushPublisher push, string mac, ILogger log, CancellationToken ct)
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

    /// <summary>Largest CSV device management table accepted (bytes); larger ones get 413.</summary>
    public const long MaxBulkBytes = 16L * 1024 * 1024;

    /// <summary>The CSV columns of the device management table (patent fig. 6), in order; a header row names them.</summary>
    public static readonly string[] CsvColumns =
        ["mac", "serial", "hardware_version", "isp_method", "isp_username", "isp_password", "ip_address", "domain", "vpn", "global_ip", "subscriber", "target_pattern"];

    /// <summary>
    /// Registers every row of a CSV device management table, or none: when any row is wrong, nothing is written
    /// and each wrong row is reported with its line number.
    /// </summary>
    private static async Task<Results<Ok<BulkRegisterResponse>, ProblemHttpResult>> RegisterBulk(HttpRequest request, HttpContext http, TsunaguStore store, IPushPublisher push, ILogger<RegisterUnitRequest> log)
    {
        string text;
        try
        {
            using var reader = new StreamReader(request.Body, new System.Text.UTF8Encoding(false, throwOnInvalidBytes: true));
            text = await reader.ReadToEndAsync(http.RequestAborted);
        }
        catch (BadHttpRequestException e) when (e.StatusCode == StatusCodes.Status413PayloadTooLarge)
        {
            return Problems.TooLarge($"body: a device management table is at most {MaxBulkBytes / (1024 * 1024)} MB; split it");
        }
        catch (System.Text.DecoderFallbackException)
        {
            return Problems.BadRequest("body: the table is not UTF-8 text");
        }
        var check = CheckBulk(text, store);
        if (check.FileError is not null) { return Problems.BadRequest(check.FileError); }
        if (check.Rows.Any(r => r.Error is not null))
        {
            // a problem document that also carries the BulkRegisterResponse fields: every row with its error
            var errors = check.Rows.Count(r => r.Error is not null);
            return Problems.Make(StatusCodes.Status400BadRequest, ProblemTypes.Validation, "Invalid request",
                $"rows: {errors} of {check.Rows.Count} row(s) are wrong (see rows); nothing was registered",
                extensions: new Dictionary<string, object?> { ["registered"] = 0, ["rows"] = check.Rows });
        }
        try
        {
            await CommitBulkAsync(check, http.Caller().Subject, store, push, log, http.RequestAborted);
        }
        catch (StoreConflictException e)
        {
            return Problems.Conflict(e.Message);
        }
        return TypedResults.Ok(new BulkRegisterResponse(check.Valid.Count, check.Rows));
    }

    /// <summary>The outcome of checking a CSV device management table: a file-level error, or one result per row.</summary>
    public sealed record BulkCheck(string? FileError, IReadOnlyList<BulkRowResult> Rows, IReadOnlyList<UnitRow> Valid)
    {
        public bool CanCommit => FileError is null && Valid.Count > 0 && Rows.All(r => r.Error is null);
    }

    /// <summary>Checks every row of a CSV device management table against the registration rules; writes nothing.</summary>
    public static BulkCheck CheckBulk(string text, TsunaguStore store)
    {
        List<List<string>> rows;
        try
        {
            rows = Csv.Parse(text);
        }
        catch (FormatException e)
        {
            return new($"csv: {e.Message}", [], []);
        }
        if (rows.Count == 0) { return new("csv: empty; the first line must be the header " + string.Join(',', CsvColumns), [], []); }
        var header = rows[0].Select(h => h.Trim().ToLowerInvariant()).ToList();
        var unknown = header.Where(h => !CsvColumns.Contains(h)).ToList();
        if (unknown.Count > 0 || !header.Contains("mac") || !header.Contains("serial"))
        {
            return new($"csv header: {(unknown.Count > 0 ? $"unknown column(s) {string.Join(", ", unknown)}" : "mac and serial are required")}; columns are {string.Join(',', CsvColumns)}", [], []);
        }
        string? Cell(List<string> row, string column)
        {
            var i = header.IndexOf(column);
            return i < 0 || i >= row.Count || string.IsNullOrWhiteSpace(row[i]) ? null : row[i].Trim();
        }
        var results = new List<BulkRowResult>();
        var valid = new List<UnitRow>();
        var seen = new HashSet<string>();
        for (var i = 1; i < rows.Count; i++)
        {
            var row = rows[i];
            var line = i + 1;
            if (row.Count > header.Count) { results.Add(new(line, null, $"{row.Count} fields, the header has {header.Count}")); continue; }
            var req = new RegisterUnitRequest(Cell(row, "mac") ?? "", Cell(row, "serial") ?? "", Cell(row, "hardware_version") ?? "r1",
                new WanAccount(Cell(row, "isp_method") ?? "dhcp", Cell(row, "isp_username"), Cell(row, "isp_password")),
                Cell(row, "ip_address"), Cell(row, "domain"), Cell(row, "vpn"), Cell(row, "global_ip"), Cell(row, "target_pattern"), Cell(row, "subscriber"));
            var (unit, error) = Validate(req, store);
            if (unit is not null && !seen.Add(unit.Mac)) { error = $"mac: {unit.Mac} appears twice in this file"; }
            else if (unit is not null && store.GetUnit(unit.Mac) is not null) { error = $"mac: {unit.Mac} is already registered"; }
            results.Add(new(line, unit?.Mac ?? Cell(row, "mac"), error));
            if (error is null && unit is not null) { valid.Add(unit); }
        }
        return new(null, results, valid);
    }

    /// <summary>Registers every unit of a checked table (all rows valid), with default configuration and broker accounts.</summary>
    public static async Task CommitBulkAsync(BulkCheck check, string actor, TsunaguStore store, IPushPublisher push, ILogger log, CancellationToken ct)
    {
        if (check.FileError is not null || check.Rows.Any(r => r.Error is not null))
        {
            throw new InvalidOperationException("a device management table with errors cannot be registered");
        }
        // every unit, its first configuration and the audit entry in one transaction: a unit registered meanwhile
        // (another import) makes the whole table fail with nothing written
        store.AddUnits(check.Valid, store.GetServiceConfig(DefaultServiceConfig), actor, "units.register-bulk", null, $"{check.Valid.Count} unit(s)");
        foreach (var unit in check.Valid)
        {
            await EnsureBrokerAccountAsync(push, unit.Mac, log, ct);
        }
    }

    /// <summary>Pushes "check now" to each unit (patent 0053, 0071) and records its delivery; throws <see cref="PushException"/> when push is unavailable.</summary>
    public static Task<ForceCheckResponse> PushCheckAsync(IPushPublisher push, TsunaguStore store, TimeProvider time, string actor,
        IReadOnlyList<string> macs, int importance, CancellationToken ct) =>
        PushChecks.SendAsync(push, store, time, actor, macs, importance, ct);

    private static async Task<Results<Ok<ForceCheckResponse>, ProblemHttpResult>> ForceCheck(ForceCheckRequest request, HttpContext http, TsunaguStore store, IPushPublisher push,
        TimeProvider time, CancellationToken ct)
    {
        if (request.Importance is < 1 or > 5) { return Problems.BadRequest($"importance: {request.Importance} is outside 1..5"); }
        if ((request.Macs is null || request.Macs.Count == 0) && request.Pattern is null && request.Application is null)
        {
            return Problems.BadRequest("select units: give macs, pattern, application (and version), or a combination");
        }
        if (request.Version is not null && request.Application is null)
        {
            return Problems.BadRequest("version: selecting by version needs application");
        }
        if (push.BrokerUri is null)
        {
            return Problems.PushUnavailable("Push unavailable", "push is disabled on this server");
        }
        var matching = store.QueryUnits(new UnitQuery(request.Pattern, Application: request.Application, Version: request.Version))
            .Select(u => u.Mac).ToHashSet();
        var selected = new List<string>();
        if (request.Macs is { Count: > 0 })
        {
            foreach (var text in request.Macs)
            {
                if (!MacAddress.TryNormalize(text, out var mac)) { return Problems.BadRequest($"macs: '{text}' is not a MAC address"); }
                if (store.GetUnit(mac) is null) { return Problems.NotFound($"unit {mac} is not registered"); }
                if (matching.Contains(mac) && !selected.Contains(mac)) { selected.Add(mac); }
            }
        }
        else
        {
            selected.AddRange(matching.Order(StringComparer.Ordinal));
        }
        ForceCheckResponse response;
        try
        {
            response = await PushCheckAsync(push, store, time, http.Caller().Subject, selected, request.Importance, ct);
        }
        catch (PushException e)
        {
            return Problems.PushUnavailable("Push failed", e.Message);
        }
        store.Audit(http.Caller().Subject, "units.check", string.Join(",", selected), $"importance {request.Importance}; check {response.CheckId}");
        return TypedResults.Ok(response);
    }

    /// <summary>A new revision for the unit (the operator's, or on a subscriber's behalf); the unit is told to check at once.</summary>
    private static async Task<Results<Ok<UnitConfigAssigned>, ProblemHttpResult>> AssignServiceConfig(string mac, ServiceConfiguration config, HttpContext http, TsunaguStore store,
        IPushPublisher push, TimeProvider time)
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
            return Problems.BadRequest(e.Message, e.Field);
        }
        var actor = http.Caller().Subject;
        var revision = store.AddUnitConfig(m, config, audit: r => new AuditEntry(actor, "unit.service-config", m, $"revision {r}"));
        string? pushWarning = null;
        if (push.BrokerUri is null)
        {
            pushWarning = "push is disabled on this server; the unit takes the change at its next periodic check";
        }
        else
        {
            try
            {
                await PushCheckAsync(push, store, time, http.Caller().Subject, [m], 5, http.RequestAborted);
            }
            catch (PushException e)
            {
                pushWarning = $"the unit could not be told at once ({e.Message}); it takes the change at its next check";
            }
        }
        return TypedResults.Ok(new UnitConfigAssigned(m, revision, ConfigStatus.Provisional, pushWarning));
    }
}
