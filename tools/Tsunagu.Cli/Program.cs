using System.CommandLine;
using Tsunagu.Cli;
using Tsunagu.Cli.Factory;
using Tsunagu.Hal;
using Tsunagu.Protocol;
using Tsunagu.Server.Units.Registration;

// tsunagu: the operator's and the factory's command line.
var root = new RootCommand("Tsunagu operator and factory tool");

// ---- connection to the operator API -----------------------------------------------------------------------
// The demo's port as the Makefile reads it: `PORT=9443 make run` in one terminal, `PORT=9443 tsunagu ...` in another.
string EnvPort(string name, int fallback) => Environment.GetEnvironmentVariable(name) is { Length: > 0 } value ? value : fallback.ToString(System.Globalization.CultureInfo.InvariantCulture);
int DemoPort(string name, int fallback) => int.TryParse(EnvPort(name, fallback), out var port) && port is > 0 and < 65536
    ? port
    : throw new ArgumentException($"${name} '{EnvPort(name, fallback)}' is not a port number");
var serverOption = new Option<string>("--server")
{
    Description = "server base URL (default: $TSUNAGU_SERVER, else https://127.0.0.1:$PORT/, PORT being 8443 unless set)",
    DefaultValueFactory = _ => Environment.GetEnvironmentVariable("TSUNAGU_SERVER") ?? $"https://127.0.0.1:{EnvPort("PORT", 8443)}/",
};
Uri ServerUri(ParseResult r) =>
    Uri.TryCreate(r.GetValue(serverOption), UriKind.Absolute, out var uri) && uri.Scheme == Uri.UriSchemeHttps
        ? uri
        : throw new ArgumentException($"--server '{r.GetValue(serverOption)}' must be an absolute https:// URL (check $TSUNAGU_SERVER and $PORT)");
var certOption = new Option<string>("--server-cert") { Description = "the server's certificate (PEM); its key is pinned", DefaultValueFactory = _ => Environment.GetEnvironmentVariable("TSUNAGU_SERVER_CERT") ?? ".tsunagu/demo/server/tls/server.pem" };
var userOption = new Option<string>("--operator") { Description = "operator name", DefaultValueFactory = _ => Environment.GetEnvironmentVariable("TSUNAGU_OPERATOR") ?? "operator" };
var passwordOption = new Option<string?>("--password") { Description = "operator password (default: $TSUNAGU_OPERATOR_PASSWORD)" };
Option[] connection = [serverOption, certOption, userOption, passwordOption];

OperatorClient Connect(ParseResult r)
{
    var password = r.GetValue(passwordOption) ?? Environment.GetEnvironmentVariable("TSUNAGU_OPERATOR_PASSWORD")
        ?? throw new ArgumentException("no operator password: give --password or set TSUNAGU_OPERATOR_PASSWORD");
    return new OperatorClient(ServerUri(r), r.GetValue(userOption)!, password, [OperatorClient.PinFromPemFile(r.GetValue(certOption)!)]);
}

async Task<int> Guard(Func<Task<int>> action)
{
    try
    {
        return await action();
    }
    catch (HttpRequestException e)
    {
        // "An error occurred while sending the request" and "see inner exception" say nothing: the socket's or TLS's reason does
        var reasons = new List<string>();
        for (Exception? x = e; x is not null; x = x.InnerException)
        {
            if (!x.Message.Contains("inner exception", StringComparison.OrdinalIgnoreCase) && !x.Message.StartsWith("An error occurred while sending", StringComparison.Ordinal)
                && !reasons.Any(r => r.Contains(x.Message, StringComparison.Ordinal)))
            {
                reasons.Add(x.Message);
            }
        }
        Console.Error.WriteLine($"error: no answer from the server ({string.Join(": ", reasons)}): is it running (`make run`), on this --server / $PORT?");
        return 1;
    }
    catch (TaskCanceledException e) when (e.InnerException is TimeoutException)
    {
        Console.Error.WriteLine("error: the server did not answer in time");
        return 1;
    }
    catch (Exception e) when (e is OperatorApiException or DiskImageException or ReimageRefusedException or ArgumentException or ProtocolException or IOException)
    {
        Console.Error.WriteLine($"error: {e.Message}");
        return 1;
    }
}

// ---- demo -------------------------------------------------------------------------------------------------
var unitsOption = new Option<int>("--units") { Description = "number of simulated units", DefaultValueFactory = _ => 5 };
var dataOption = new Option<string>("--data") { Description = "demo data directory", DefaultValueFactory = _ => ".tsunagu/demo" };
var portOption = new Option<int>("--port") { Description = "HTTPS port on 127.0.0.1 (default: $PORT, else 8443)", DefaultValueFactory = _ => DemoPort("PORT", 8443) };
var mqttPortOption = new Option<int>("--mqtt-port") { Description = "embedded MQTT broker port on 127.0.0.1, MQTT over TLS (default: $MQTT_PORT, else 8883)", DefaultValueFactory = _ => DemoPort("MQTT_PORT", 8883) };
var demoPasswordOption = new Option<string?>("--operator-password") { Description = "the demo operator's password (default: the one of the last run, kept in DATA/operator-password; a new one the first time)" };
var intervalOption = new Option<int>("--check-interval") { Description = "seconds between periodic checks", DefaultValueFactory = _ => 300 };
var labImageOption = new Option<string?>("--lab-image") { Description = "also catalogue the QEMU board's firmware image (the `make image` output folder) for `make lab`" };
var demo = new Command("demo", "run the server with the demo catalogue and a fleet of simulated units") { unitsOption, dataOption, portOption, mqttPortOption, intervalOption, labImageOption, demoPasswordOption };
demo.SetAction((r, ct) => DemoCommand.RunAsync(new DemoCommand.Settings(r.GetValue(unitsOption), r.GetValue(dataOption)!, r.GetValue(portOption),
    r.GetValue(mqttPortOption), TimeSpan.FromSeconds(r.GetValue(intervalOption)), r.GetValue(labImageOption), r.GetValue(demoPasswordOption)), Console.Out, ct));
root.Subcommands.Add(demo);

// ---- unit add: factory identity + device management table row --------------------------------------------
var macOption = new Option<string>("--mac") { Description = "unit MAC address", Required = true };
var serialOption = new Option<string>("--serial") { Description = "serial number", Required = true };
var hardwareOption = new Option<string>("--hardware") { Description = "hardware version", DefaultValueFactory = _ => "r1" };
var boardOption = new Option<string>("--board") { Description = "board name", DefaultValueFactory = _ => "simulated" };
var unitKeyOption = new Option<string>("--unit-key") { Description = "the operator's unit key file (never copied to the unit)", Required = true };
var releaseKeyOption = new Option<string[]>("--release-public-key") { Description = "release public key(s), SPKI base64", AllowMultipleArgumentsPerToken = true };
var provMethodOption = new Option<string>("--provisional-method") { Description = "provisional WAN method", DefaultValueFactory = _ => "pppoe" };
var provUserOption = new Option<string?>("--provisional-user") { Description = "provisional WAN account" };
var provPasswordOption = new Option<string?>("--provisional-password") { Description = "provisional WAN password" };
var ispMethodOption = new Option<string>("--isp-method") { Description = "main WAN method: pppoe, dhcp or static", DefaultValueFactory = _ => "pppoe" };
var ispUserOption = new Option<string?>("--isp-user") { Description = "ISP account" };
var ispPasswordOption = new Option<string?>("--isp-password") { Description = "ISP password" };
var ipOption = new Option<string?>("--ip") { Description = "IP address (static WAN), e.g. 10.0.2.15/24" };
var gatewayOption = new Option<string?>("--gateway") { Description = "default gateway of a static WAN (IPv4)" };
var dnsOption = new Option<string[]>("--dns") { Description = "name server of a static WAN (IPv4); up to 3: repeat the option or separate with commas" };
var bootstrapUrlOption = new Option<string?>("--bootstrap-url") { Description = "initial setting server URL as the unit reaches it (default: --server)" };
var domainOption = new Option<string?>("--domain") { Description = "domain" };
var vpnOption = new Option<string?>("--vpn") { Description = "VPN settings" };
var globalIpOption = new Option<string?>("--global-ip") { Description = "global IP" };
var subscriberOption = new Option<string?>("--subscriber") { Description = "subscriber account" };
var targetOption = new Option<string?>("--target") { Description = "the install pattern the host keeps the unit on (a verified pattern)" };
var singleLinkOption = new Option<bool>("--single-link") { Description = "the operator is this unit's ISP (variant 2): the unit keeps its provisional connection as the main one" };
var outOption = new Option<string>("--out") { Description = "directory to write the factory partition (identity.json) to", Required = true };
var unitAdd = new Command("add", "create a unit's factory identity and register its settings with the server")
{
    macOption, serialOption, hardwareOption, boardOption, unitKeyOption, releaseKeyOption, provMethodOption, provUserOption, provPasswordOption,
    ispMethodOption, ispUserOption, ispPasswordOption, ipOption, gatewayOption, dnsOption, domainOption, vpnOption, globalIpOption, subscriberOption, targetOption, bootstrapUrlOption, singleLinkOption, outOption,
};
foreach (var o in connection) { unitAdd.Options.Add(o); }
// The identity of one unit from the options, registered on the server unless the unit is already (a reimage).
async Task<FactoryIdentity> MakeIdentity(ParseResult r, bool register, CancellationToken ct)
{
    var server = ServerUri(r);
    var pin = OperatorClient.PinFromPemFile(r.GetValue(certOption)!);
    var identity = FactoryIdentities.Create(new IdentitySpec(r.GetValue(macOption)!, r.GetValue(serialOption)!, r.GetValue(hardwareOption)!,
        r.GetValue(boardOption)!, r.GetValue(bootstrapUrlOption) ?? server.ToString(),
        new WanAccount(r.GetValue(provMethodOption)!, r.GetValue(provUserOption), r.GetValue(provPasswordOption)),
        [pin], r.GetValue(releaseKeyOption) ?? [], r.GetValue(singleLinkOption)), FactoryIdentities.ReadUnitKey(r.GetValue(unitKeyOption)!));
    if (register)
    {
        using var client = Connect(r);
        await client.RegisterAsync(new RegisterUnitRequest(identity.Mac, identity.Serial, identity.HardwareVersion,
            new WanAccount(r.GetValue(ispMethodOption)!, r.GetValue(ispUserOption), r.GetValue(ispPasswordOption), r.GetValue(ipOption),
                r.GetValue(gatewayOption), UnitRegistration.NameServers(string.Join(',', r.GetValue(dnsOption) ?? []))),
            r.GetValue(ipOption), r.GetValue(domainOption), r.GetValue(vpnOption), r.GetValue(globalIpOption), r.GetValue(targetOption), r.GetValue(subscriberOption)), ct);
    }
    else
    {
        // a reimage writes the identity of a unit the server knows, as the server knows it: a mistyped MAC or serial
        // would make a unit that is refused at its first challenge
        using var client = Connect(r);
        var known = await client.FindUnitAsync(identity.Mac, ct)
                    ?? throw new ReimageRefusedException($"the server has no unit {identity.Mac}: --reimage rewrites the identity of a registered unit (leave it out to register a new one); nothing was written");
        if (known.Serial != identity.Serial || known.HardwareVersion != identity.HardwareVersion)
        {
            throw new ReimageRefusedException($"the server has {identity.Mac} as serial {known.Serial}, hardware {known.HardwareVersion}, not serial {identity.Serial}, hardware {identity.HardwareVersion}: a reimage writes the unit's registered identity; nothing was written");
        }
    }
    return identity;
}

unitAdd.SetAction((r, ct) => Guard(async () =>
{
    var identity = await MakeIdentity(r, register: true, ct);
    await DirectoryFactoryPartition.BurnAsync(r.GetValue(outOption)!, identity, ct);
    Console.WriteLine($"registered {identity.Mac} ({identity.Serial}); factory identity written to {Path.GetFullPath(r.GetValue(outOption)!)}");
    return 0;
}));

// ---- factory burn / show: the factory partition of a disk image ---------------------------------------------
var imageOption = new Option<string>("--image") { Description = "the unit's disk image (GPT with a 'factory' partition; `make image`)", Required = true };
var reimageOption = new Option<bool>("--reimage") { Description = "the unit is already registered (a technician reimaging it): write the same identity again, register nothing; refused unless the server has the unit with this serial and hardware" };
var burn = new Command("burn", "write one unit's identity into the factory partition of a disk image and register the unit")
{
    macOption, serialOption, hardwareOption, boardOption, unitKeyOption, releaseKeyOption, provMethodOption, provUserOption, provPasswordOption,
    ispMethodOption, ispUserOption, ispPasswordOption, ipOption, gatewayOption, dnsOption, domainOption, vpnOption, globalIpOption, subscriberOption, targetOption, bootstrapUrlOption,
    singleLinkOption, imageOption, reimageOption,
};
foreach (var o in connection) { burn.Options.Add(o); }
burn.SetAction((r, ct) => Guard(async () =>
{
    var image = r.GetValue(imageOption)!;
    GptImage.Find(image, GptImage.FactoryPartition); // refuse a wrong image before registering anything
    var reimage = r.GetValue(reimageOption);
    var identity = await MakeIdentity(r, register: !reimage, ct);
    await GptImage.BurnFactoryAsync(image, identity, ct);
    Console.WriteLine(reimage
        ? $"factory partition of {image} rewritten for {identity.Mac} ({identity.Serial}); the unit comes back as itself"
        : $"registered {identity.Mac} ({identity.Serial}); factory partition of {image} written");
    return 0;
}));
var showImage = new Command("show", "print the identity in a disk image's factory partition (the unit secret is not printed)") { imageOption };
showImage.SetAction((r, ct) => Guard(async () =>
{
    var id = await GptImage.ReadFactoryAsync(r.GetValue(imageOption)!, ct);
    Console.WriteLine($"mac {id.Mac}\nserial {id.Serial}\nhardware {id.HardwareVersion}\nboard {id.Board}\n" +
                      $"initial server {id.Bootstrap.InitialServerUrl}\nprovisional wan {id.Bootstrap.ProvisionalWan.Method}\n" +
                      $"single link {(id.Bootstrap.SingleLink ? "yes (the operator is the unit's ISP)" : "no")}\n" +
                      $"server pins {id.ServerCertificatePins.Count}\nrelease keys {id.ReleasePublicKeys.Count}");
    return 0;
}));
root.Subcommands.Add(new Command("factory", "the factory partition of a unit's disk image") { burn, showImage });
root.Subcommands.Add(new Command("unit", "factory operations on one unit") { unitAdd });

// ---- units list / check -------------------------------------------------------------------------------------
var patternOption = new Option<string?>("--pattern") { Description = "only units on this install pattern" };
var stateOption = new Option<string?>("--state") { Description = "only units in this state" };
var appFilter = new Option<string?>("--app") { Description = "only units running this application" };
var versionFilter = new Option<string?>("--version") { Description = "... at this version (with --app)" };
var onlineFilter = new Option<bool?>("--online") { Description = "true: connected to the broker now; false: not" };
var unseenFilter = new Option<int?>("--not-seen-for") { Description = "only units not seen for this many minutes" };
var list = new Command("list", "list units: MAC, state, pattern, presence, last seen") { patternOption, stateOption, appFilter, versionFilter, onlineFilter, unseenFilter };
foreach (var o in connection) { list.Options.Add(o); }
list.SetAction((r, ct) => Guard(async () =>
{
    using var client = Connect(r);
    var query = new List<string>();
    void Add(string name, string? value) { if (value is not null) { query.Add($"{name}={Uri.EscapeDataString(value)}"); } }
    Add("pattern", r.GetValue(patternOption));
    Add("state", r.GetValue(stateOption));
    Add("app", r.GetValue(appFilter));
    Add("version", r.GetValue(versionFilter));
    Add("online", r.GetValue(onlineFilter)?.ToString().ToLowerInvariant());
    Add("seenBefore", r.GetValue(unseenFilter) is { } minutes ? DateTimeOffset.UtcNow.AddMinutes(-minutes).ToString("O") : null);
    var body = await client.SendAsync(HttpMethod.Get, Routes.Units + (query.Count > 0 ? "?" + string.Join('&', query) : ""), null, ct);
    var units = System.Text.Json.JsonSerializer.Deserialize(body, ProtocolJson.Default.ListUnitView)!;
    Console.WriteLine($"{"MAC",-17}  {"STATE",-12}  {"PATTERN",-10}  {"CONFIG",6}  {"ONLINE",6}  LAST SEEN");
    foreach (var u in units)
    {
        Console.WriteLine($"{u.Mac,-17}  {u.State,-12}  {u.Pattern ?? "-",-10}  {u.AppliedConfigRevision?.ToString() ?? "-",6}  {(u.Online ? "yes" : "no"),6}  {u.LastSeen?.ToString("u") ?? "never"}");
    }
    Console.WriteLine($"{units.Count} unit(s)");
    return 0;
}));
var checkMacs = new Option<string[]>("--mac") { Description = "unit(s) to check", AllowMultipleArgumentsPerToken = true };
var importanceOption = new Option<int>("--importance") { Description = "importance carried by the push (1-5)", DefaultValueFactory = _ => 5 };
var check = new Command("check", "force units to run their version check now (MQTT push)") { checkMacs, patternOption, importanceOption };
foreach (var o in connection) { check.Options.Add(o); }
check.SetAction((r, ct) => Guard(async () =>
{
    using var client = Connect(r);
    var result = await client.ForceCheckAsync(new ForceCheckRequest(r.GetValue(checkMacs), r.GetValue(patternOption), r.GetValue(importanceOption)), ct);
    Console.WriteLine($"check requested from {result.Notified.Count} unit(s): {string.Join(", ", result.Notified)}");
    return 0;
}));
var units = new Command("units", "query and command the fleet") { list, check };
foreach (var c in CatalogueCommands.UnitCommands(connection, Connect, Guard)) { units.Subcommands.Add(c); }
foreach (var c in UnitLifecycleCommands.UnitCommands(connection, Connect, Guard)) { units.Subcommands.Add(c); }
units.Subcommands.Add(UpdateWindowCommands.Window(connection, Connect, Guard));
foreach (var c in FleetCommands.UnitCommands(connection, Connect, Guard)) { units.Subcommands.Add(c); }
root.Subcommands.Add(FleetCommands.Group(connection, Connect, Guard));
root.Subcommands.Add(FleetCommands.Rollout(connection, Connect, Guard));
root.Subcommands.Add(UnitLifecycleCommands.Secrets(connection, Connect, Guard));
root.Subcommands.Add(units);
foreach (var c in CatalogueCommands.Create(connection, Connect, Guard)) { root.Subcommands.Add(c); }
root.Subcommands.Add(MediaCommands.Create(connection, Connect, Guard));

root.Subcommands.Add(BundleCommands.Create());
root.Subcommands.Add(FleetSimCommand.Create());
root.Subcommands.Add(ChaosCommand.Create());

// ---- services render: preview what a service configuration renders to ---------------------------------------
var configArgument = new Argument<string>("CONFIG") { Description = "service configuration (JSON, as the host sends it)" };
var renderBoardOption = new Option<string>("--board") { Description = "board name (board/NAME/board.json) or path to a board.json", Required = true };
var boardsOption = new Option<string>("--boards") { Description = "folder holding one folder per board", DefaultValueFactory = _ => "board" };
var renderOutOption = new Option<string>("--out") { Description = "directory to write the rendered files to", Required = true };
var dataDirOption = new Option<string>("--data-dir") { Description = "the unit's data partition, as paths in the files show it", DefaultValueFactory = _ => "/data" };
var runDirOption = new Option<string>("--run-dir") { Description = "the unit's run directory for pid files and logs", DefaultValueFactory = _ => "/run/tsunagu" };
var filterListsOption = new Option<string?>("--filter-lists")
{
    Description = "folder of the content filter's category lists (NAME.domains, as the application filter-lists carries them); default: DATA-DIR/apps/filter-lists/current",
};
var render = new Command("render", "render a service configuration for a board into daemon configuration files, as the unit would")
{
    configArgument, renderBoardOption, boardsOption, renderOutOption, dataDirOption, runDirOption, filterListsOption,
};
render.SetAction(r => ServicesCommand.Render(new ServicesCommand.Settings(r.GetValue(configArgument)!, r.GetValue(renderBoardOption)!,
    r.GetValue(boardsOption)!, r.GetValue(renderOutOption)!, r.GetValue(dataDirOption)!, r.GetValue(runDirOption)!, r.GetValue(filterListsOption)),
    Console.Out, Console.Error));
root.Subcommands.Add(new Command("services", "router services") { render });

return await root.Parse(args).InvokeAsync();
