using System.CommandLine;
using System.Net.Http.Headers;
using System.Text;
using System.Text.Json;
using Tsunagu.Cli.Factory;
using Tsunagu.Protocol;
using Tsunagu.Server.Apis;
using Tsunagu.Server.Catalogue;

namespace Tsunagu.Cli;

/// <summary>The operator API on the command line: catalogue, patterns, update programs, fleet, policy, audit.</summary>
public static class CatalogueCommands
{
    public static IEnumerable<Command> Create(Option[] connection, Func<ParseResult, OperatorClient> connect, Func<Func<Task<int>>, Task<int>> guard)
    {
        Command With(Command c) => ApiCommands.WithConnection(c, connection);
        void Run(Command c, Func<ParseResult, OperatorClient, CancellationToken, Task<string>> action) => ApiCommands.Run(c, connect, guard, action);
        // a DELETE answers 204 without a body: one line says what went; the target is checked by the server's grammar before any connection
        void Delete(Command c, Func<ParseResult, (string Path, string Done)> target) =>
            c.SetAction((r, ct) => guard(async () =>
            {
                var (path, done) = target(r);
                using var client = connect(r);
                await client.SendAsync(HttpMethod.Delete, path, null, ct);
                Console.WriteLine(done);
                return 0;
            }));

        // software
        var appOpt = new Option<string>("--app") { Description = "application id", Required = true };
        var versionOpt = new Option<string>("--version") { Description = "version", Required = true };
        var nameOpt = new Option<string?>("--name") { Description = "display name" };
        var hwReq = new Option<string?>("--requires-hardware") { Description = "accepted hardware versions, comma-separated" };
        var osReq = new Option<string?>("--requires-os") { Description = "accepted OS versions, comma-separated" };
        var softwareAdd = With(new Command("add", "catalogue a software version") { appOpt, versionOpt, nameOpt, hwReq, osReq });
        Run(softwareAdd, (r, c, ct) => c.SendJsonAsync(HttpMethod.Post, "/api/v1/software",
            new SoftwareRequest(r.GetValue(appOpt)!, r.GetValue(versionOpt)!, r.GetValue(nameOpt) ?? r.GetValue(appOpt)!, r.GetValue(hwReq), r.GetValue(osReq)), ct));
        var appFilter = new Option<string?>("--app") { Description = "only this application" };
        var softwareList = With(new Command("list", "list the software catalogue") { appFilter });
        Run(softwareList, (r, c, ct) => c.SendAsync(HttpMethod.Get, "/api/v1/software" + Query(("appId", r.GetValue(appFilter))), null, ct));
        var softwareDelete = With(new Command("delete", "delete a catalogued software version that no pattern lists (and that is not the last version of an application a patch is for)")
        {
            appOpt, versionOpt,
        });
        Delete(softwareDelete, r =>
        {
            var (app, version) = (Identifier(r.GetValue(appOpt), "--app"), Identifier(r.GetValue(versionOpt), "--version"));
            return ($"/api/v1/software/{app}/{version}", $"deleted software {app} {version}");
        });
        yield return new Command("software", "the software catalogue (patent fig. 8 (b))") { softwareAdd, softwareList, softwareDelete };

        // patches
        var idOpt = new Option<string>("--id") { Description = "identifier", Required = true };
        var targetApp = new Option<string>("--target-app") { Description = "application the patch applies to", Required = true };
        var importanceOpt = new Option<int>("--importance") { Description = "1-5 (5 = at once)", Required = true };
        var patchAdd = With(new Command("add", "catalogue a verified patch") { idOpt, nameOpt, versionOpt, targetApp, importanceOpt, hwReq, osReq });
        Run(patchAdd, (r, c, ct) => c.SendJsonAsync(HttpMethod.Post, "/api/v1/patches", new PatchRequest(r.GetValue(idOpt)!, r.GetValue(nameOpt) ?? r.GetValue(idOpt)!,
            r.GetValue(versionOpt)!, r.GetValue(targetApp)!, r.GetValue(importanceOpt), r.GetValue(osReq), r.GetValue(hwReq)), ct));
        var patchList = With(new Command("list", "list patches"));
        Run(patchList, (_, c, ct) => c.SendAsync(HttpMethod.Get, "/api/v1/patches", null, ct));
        var patchArg = new Argument<string>("patch") { Description = "patch id" };
        var patchDelete = With(new Command("delete", "delete a patch") { patchArg });
        Delete(patchDelete, r =>
        {
            var id = Identifier(r.GetValue(patchArg), "patch");
            return ($"/api/v1/patches/{id}", $"deleted patch {id}");
        });
        yield return new Command("patch", "verified patches with importance (patent fig. 8 (c))") { patchAdd, patchList, patchDelete };

        // patterns
        var hardwareOpt = new Option<string>("--hardware") { Description = "hardware version", Required = true };
        var osOpt = new Option<string>("--os") { Description = "OS version", Required = true };
        var appsOpt = new Option<string[]>("--apps") { Description = "NAME=VERSION for each application", Required = true, AllowMultipleArgumentsPerToken = true };
        var patternCreate = With(new Command("create", "create a draft install pattern") { idOpt, nameOpt, hardwareOpt, osOpt, appsOpt });
        Run(patternCreate, (r, c, ct) => c.SendJsonAsync(HttpMethod.Post, "/api/v1/patterns",
            new NewPattern(r.GetValue(idOpt)!, r.GetValue(nameOpt) ?? "", r.GetValue(hardwareOpt)!, r.GetValue(osOpt)!, ParseApps(r.GetValue(appsOpt)!)), ct));
        var patternArg = new Argument<string>("pattern") { Description = "pattern id" };
        var patternVerify = With(new Command("verify", "mark a draft pattern verified (after checking it against the catalogue)") { patternArg });
        Run(patternVerify, (r, c, ct) => c.SendAsync(HttpMethod.Post, $"/api/v1/patterns/{Identifier(r.GetValue(patternArg), "pattern")}/verify", null, ct));
        var patternRetire = With(new Command("retire", "retire a verified pattern") { patternArg });
        Run(patternRetire, (r, c, ct) => c.SendAsync(HttpMethod.Post, $"/api/v1/patterns/{Identifier(r.GetValue(patternArg), "pattern")}/retire", null, ct));
        var statusOpt = new Option<string?>("--status") { Description = "draft, verified or retired" };
        var patternList = With(new Command("list", "list install patterns") { statusOpt });
        Run(patternList, (r, c, ct) => c.SendAsync(HttpMethod.Get, "/api/v1/patterns" + Query(("status", r.GetValue(statusOpt))), null, ct));
        var patternDelete = With(new Command("delete", "delete a draft pattern that no update program, unit or rollout refers to (retire a verified one)") { patternArg });
        Delete(patternDelete, r =>
        {
            var id = Identifier(r.GetValue(patternArg), "pattern");
            return ($"/api/v1/patterns/{id}", $"deleted pattern {id}");
        });
        yield return new Command("pattern", "verified install patterns (patent fig. 8 (d))") { patternCreate, patternVerify, patternRetire, patternList, patternDelete };

        // update programs
        var fromOpt = new Option<string>("--from") { Description = "pattern the program updates from", Required = true };
        var toOpt = new Option<string>("--to") { Description = "verified pattern it leads to", Required = true };
        var priorityOpt = new Option<int>("--priority") { Description = "higher wins when several programs leave one pattern", DefaultValueFactory = _ => 0 };
        var bundleOpt = new Option<FileInfo>("--bundle") { Description = "the signed bundle (.tsb) to upload", Required = true };
        var programAdd = With(new Command("add", "upload a bundle and define the update program for a pattern") { idOpt, fromOpt, toOpt, importanceOpt, priorityOpt, bundleOpt });
        Run(programAdd, async (r, c, ct) =>
        {
            var file = r.GetValue(bundleOpt)!;
            if (!file.Exists) { throw new ArgumentException($"--bundle {file.FullName}: no such file"); }
            await using var stream = file.OpenRead();
            var content = new StreamContent(stream);
            content.Headers.ContentType = new MediaTypeHeaderValue("application/octet-stream");
            var uploaded = JsonSerializer.Deserialize<ArtifactView>(await c.SendAsync(HttpMethod.Post, "/api/v1/artifacts", content, ct), JsonSerializerOptions.Web)!;
            Console.Error.WriteLine($"uploaded {file.Name}: {uploaded.Size} bytes, sha256 {uploaded.Sha256}");
            return await c.SendJsonAsync(HttpMethod.Post, "/api/v1/update-programs", new NewUpdateProgram(r.GetValue(idOpt)!, r.GetValue(fromOpt)!,
                r.GetValue(toOpt)!, r.GetValue(importanceOpt), r.GetValue(priorityOpt), uploaded.Sha256), ct);
        });
        var programList = With(new Command("list", "list update programs"));
        Run(programList, (_, c, ct) => c.SendAsync(HttpMethod.Get, "/api/v1/update-programs", null, ct));
        var programArg = new Argument<string>("program") { Description = "update program id" };
        var programDelete = With(new Command("delete", "delete an update program that no unfinished rollout, unit being updated or targeting its to-pattern, or way back needs (its bundle stays)")
        {
            programArg,
        });
        Delete(programDelete, r =>
        {
            var id = Identifier(r.GetValue(programArg), "program");
            return ($"/api/v1/update-programs/{id}", $"deleted update program {id}");
        });
        yield return new Command("program", "update programs per pattern (patent fig. 8 (e))") { programAdd, programList, programDelete };

        // policy
        var cpu = new Option<double?>("--cpu") { Description = "importance 4 runs below this CPU use (0-1)" };
        var wan = new Option<double?>("--wan") { Description = "importance 4 runs below this WAN use (0-1)" };
        var low = new Option<string?>("--low-window") { Description = "importance 3 window, HH-HH (e.g. 2-5)" };
        var maintenance = new Option<string?>("--maintenance-window") { Description = "importance 1-2 window, HH-HH" };
        var policySet = With(new Command("set", "change the importance policy") { cpu, wan, low, maintenance });
        Run(policySet, async (r, c, ct) =>
        {
            var current = JsonSerializer.Deserialize<UpdatePolicy>(await c.SendAsync(HttpMethod.Get, "/api/v1/settings/update-policy", null, ct), JsonSerializerOptions.Web)!;
            var (ls, le) = Window(r.GetValue(low), "--low-window", (current.LowWindowStartHour, current.LowWindowEndHour));
            var (ms, me) = Window(r.GetValue(maintenance), "--maintenance-window", (current.MaintenanceStartHour, current.MaintenanceEndHour));
            return await c.SendJsonAsync(HttpMethod.Put, "/api/v1/settings/update-policy",
                new UpdatePolicy(r.GetValue(cpu) ?? current.CpuThreshold, r.GetValue(wan) ?? current.WanThreshold, ls, le, ms, me), ct);
        });
        var policyShow = With(new Command("show", "show the importance policy"));
        Run(policyShow, (_, c, ct) => c.SendAsync(HttpMethod.Get, "/api/v1/settings/update-policy", null, ct));
        yield return new Command("policy", "when updates of each importance run (patent 0048)") { policyShow, policySet };

        // audit, subscribers
        var limitOpt = new Option<int>("--limit") { Description = "entries", DefaultValueFactory = _ => 50 };
        var auditFilters = new[] { "actor", "action", "target", "unit", "from", "to", "before" }
            .Select(name => (Name: name, Option: new Option<string?>("--" + name) { Description = $"the API's '{name}' filter (docs/operator-api.md, section 7)" })).ToList();
        var audit = With(new Command("audit", "the audit log of operator actions, newest first") { limitOpt });
        foreach (var (_, option) in auditFilters) { audit.Options.Add(option); }
        Run(audit, (r, c, ct) => c.SendAsync(HttpMethod.Get, $"/api/v1/audit?limit={r.GetValue(limitOpt)}" + string.Concat(auditFilters
            .Where(f => r.GetValue(f.Option) is not null).Select(f => $"&{f.Name}={Uri.EscapeDataString(r.GetValue(f.Option)!)}")), null, ct));
        yield return audit;
        var subName = new Option<string>("--name") { Description = "subscriber account", Required = true };
        var subPassword = new Option<string>("--subscriber-password") { Description = "their password (8+ characters)", Required = true };
        var subscriberAdd = With(new Command("add", "create or reset a subscriber account") { subName, subPassword });
        Run(subscriberAdd, (r, c, ct) => c.SendJsonAsync(HttpMethod.Post, "/api/v1/subscribers", new NewSubscriber(r.GetValue(subName)!, r.GetValue(subPassword)!), ct));
        yield return new Command("subscriber", "subscriber accounts") { subscriberAdd };

        // operator accounts and roles (administrators; auditors may list)
        var operatorName = new Argument<string>("NAME") { Description = "operator account" };
        var roleArgument = new Argument<string>("ROLE") { Description = "administrator, release-manager, support or auditor" };
        var operatorPassword = new Option<string>("--account-password") { Description = "the account's password (12+ characters)", Required = true };
        var roleOption = new Option<string?>("--role") { Description = "administrator, release-manager, support or auditor (new accounts default to auditor; absent keeps an existing account's role)" };
        var operatorAdd = With(new Command("add", "create an operator account with a role, or set an existing account's password") { operatorName, operatorPassword, roleOption });
        Run(operatorAdd, (r, c, ct) => c.SendJsonAsync(HttpMethod.Post, "/api/v1/operators",
            new NewOperator(r.GetValue(operatorName)!, r.GetValue(operatorPassword)!, r.GetValue(roleOption)), ct));
        var operatorRole = With(new Command("role", "change an operator account's role") { operatorName, roleArgument });
        Run(operatorRole, (r, c, ct) => c.SendJsonAsync(HttpMethod.Put, $"/api/v1/operators/{Uri.EscapeDataString(r.GetValue(operatorName)!)}/role",
            new RoleRequest(r.GetValue(roleArgument)), ct));
        var operatorDisable = With(new Command("disable", "disable an operator account (its tokens and sessions end)") { operatorName });
        Run(operatorDisable, (r, c, ct) => c.SendJsonAsync(HttpMethod.Post, $"/api/v1/operators/{Uri.EscapeDataString(r.GetValue(operatorName)!)}/disable", new { }, ct));
        var operatorList = With(new Command("list", "list operator accounts with their roles"));
        Run(operatorList, (_, c, ct) => c.SendAsync(HttpMethod.Get, "/api/v1/operators", null, ct));
        yield return new Command("operator", "operator accounts and their roles") { operatorAdd, operatorRole, operatorDisable, operatorList };
    }

    /// <summary>`units register-csv`, `units show`, `units target`, `units config`: added to the existing `units` command.</summary>
    public static IEnumerable<Command> UnitCommands(Option[] connection, Func<ParseResult, OperatorClient> connect, Func<Func<Task<int>>, Task<int>> guard)
    {
        Command With(Command c) => ApiCommands.WithConnection(c, connection);
        var fileArg = new Argument<FileInfo>("file") { Description = "CSV with a header row: " + string.Join(',', Tsunagu.Server.Units.Registration.DeviceTable.Columns) };
        var csv = With(new Command("register-csv", "register units in bulk from the device management table (all rows or none)") { fileArg });
        csv.SetAction((r, ct) => guard(async () =>
        {
            var file = r.GetValue(fileArg)!;
            if (!file.Exists) { throw new ArgumentException($"{file.FullName}: no such file"); }
            using var client = connect(r);
            string body;
            try
            {
                body = await client.SendAsync(HttpMethod.Post, "/api/v1/units/bulk", new StringContent(await File.ReadAllTextAsync(file.FullName, ct), Encoding.UTF8, "text/csv"), ct);
            }
            catch (OperatorApiException e) when (e.Body is { } b && b.Contains("\"rows\"", StringComparison.Ordinal))
            {
                var failed = JsonSerializer.Deserialize<BulkRegisterResponse>(b, JsonSerializerOptions.Web)!;
                foreach (var row in failed.Rows.Where(x => x.Error is not null)) { Console.Error.WriteLine($"{file.Name}:{row.Line}: {row.Error}"); }
                Console.Error.WriteLine("nothing was registered: fix the rows above and run again");
                return 1;
            }
            var result = JsonSerializer.Deserialize<BulkRegisterResponse>(body, JsonSerializerOptions.Web)!;
            Console.WriteLine($"registered {result.Registered} unit(s) from {file.Name}");
            return 0;
        }));
        yield return csv;

        var macArg = new Argument<string>("mac") { Description = "unit MAC" };
        var show = With(new Command("show", "one unit as the host sees it") { macArg });
        show.SetAction((r, ct) => guard(async () =>
        {
            using var client = connect(r);
            Console.WriteLine(Format(await client.SendAsync(HttpMethod.Get, $"/api/v1/units/{Uri.EscapeDataString(r.GetValue(macArg)!)}", null, ct)));
            return 0;
        }));
        yield return show;

        var patternOpt = new Option<string?>("--pattern") { Description = "verified pattern to hold the unit on (omit to clear)" };
        var target = With(new Command("target", "set the unit's target pattern") { macArg, patternOpt });
        target.SetAction((r, ct) => guard(async () =>
        {
            using var client = connect(r);
            Console.WriteLine(Format(await client.SendJsonAsync(HttpMethod.Put, $"/api/v1/units/{Uri.EscapeDataString(r.GetValue(macArg)!)}/target-pattern",
                new TargetPatternRequest(r.GetValue(patternOpt)), ct)));
            return 0;
        }));
        yield return target;

        var configFile = new Argument<FileInfo>("config") { Description = "service configuration (JSON)" };
        var config = With(new Command("config", "give the unit a new service configuration revision") { macArg, configFile });
        config.SetAction((r, ct) => guard(async () =>
        {
            var file = r.GetValue(configFile)!;
            if (!file.Exists) { throw new ArgumentException($"{file.FullName}: no such file"); }
            using var client = connect(r);
            Console.WriteLine(Format(await client.SendAsync(HttpMethod.Put, $"/api/v1/units/{Uri.EscapeDataString(r.GetValue(macArg)!)}/service-config",
                new StringContent(await File.ReadAllTextAsync(file.FullName, ct), Encoding.UTF8, "application/json"), ct)));
            return 0;
        }));
        yield return config;
    }

    /// <summary>
    /// <paramref name="value"/> when it is an identifier by the server's grammar (<see cref="InputRules.IsIdentifier"/>):
    /// one the server would refuse fails here, before any request, and is never put in a path.
    /// </summary>
    internal static string Identifier(string? value, string what) => InputRules.IsIdentifier(value)
        ? value
        : throw new ArgumentException($"{InputRules.Identifier(what)}; '{InputRules.Quote(value)}' is not");

    private static Dictionary<string, string> ParseApps(IEnumerable<string> items)
    {
        var apps = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (var item in items)
        {
            var eq = item.IndexOf('=');
            if (eq <= 0 || eq == item.Length - 1) { throw new ArgumentException($"--apps '{item}': expected NAME=VERSION"); }
            apps[item[..eq]] = item[(eq + 1)..];
        }
        return apps;
    }

    private static (int, int) Window(string? text, string option, (int, int) current)
    {
        if (text is null) { return current; }
        var parts = text.Split('-');
        if (parts.Length != 2 || !int.TryParse(parts[0], out var a) || !int.TryParse(parts[1], out var b))
        {
            throw new ArgumentException($"{option} '{text}': expected HH-HH, e.g. 2-5");
        }
        return (a, b);
    }

    private static string Query(params (string Name, string? Value)[] parameters)
    {
        var given = parameters.Where(p => p.Value is not null).Select(p => $"{p.Name}={Uri.EscapeDataString(p.Value!)}").ToList();
        return given.Count == 0 ? "" : "?" + string.Join('&', given);
    }

    private static string Format(string json) => ApiCommands.Format(json);
}
