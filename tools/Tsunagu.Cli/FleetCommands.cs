using System.CommandLine;
using System.Text.Json;
using Tsunagu.Cli.Factory;
using Tsunagu.Server.Fleet;
using Tsunagu.Server.Fleet.Rollouts;

namespace Tsunagu.Cli;

/// <summary>
/// `tsunagu units tag`, `tsunagu units tagged`, `tsunagu group create|list|show|delete` and
/// `tsunagu rollout create|list|show|pause|resume|abort|stop`: tags, groups and staged rollouts.
/// </summary>
public static class FleetCommands
{
    private static Command WithConnection(Command command, Option[] connection) => ApiCommands.WithConnection(command, connection);

    private static void Print(string json) => Console.WriteLine(ApiCommands.Format(json));

    /// <summary>`units tag MAC [--add T]... [--remove T]... [--clear]` and `units tagged [TAG]`.</summary>
    public static IEnumerable<Command> UnitCommands(Option[] connection, Func<ParseResult, OperatorClient> connect, Func<Func<Task<int>>, Task<int>> guard)
    {
        var mac = new Argument<string>("mac") { Description = "unit MAC" };
        var add = new Option<string[]>("--add") { Description = "tag(s) to add (a-z 0-9 . _ - :)", AllowMultipleArgumentsPerToken = true };
        var remove = new Option<string[]>("--remove") { Description = "tag(s) to remove", AllowMultipleArgumentsPerToken = true };
        var clear = new Option<bool>("--clear") { Description = "remove every tag first" };
        var tag = WithConnection(new Command("tag", "show a unit's tags, or change them with --add/--remove/--clear") { mac, add, remove, clear }, connection);
        tag.SetAction((r, ct) => guard(async () =>
        {
            using var client = connect(r);
            var path = $"/api/v1/units/{Uri.EscapeDataString(r.GetValue(mac)!)}/tags";
            var adding = r.GetValue(add) ?? [];
            var removing = r.GetValue(remove) ?? [];
            if (adding.Length == 0 && removing.Length == 0 && !r.GetValue(clear))
            {
                Print(await client.SendAsync(HttpMethod.Get, path, null, ct));
                return 0;
            }
            // the PUT replaces the set: start from the unit's tags (unless --clear), then add and remove
            var current = r.GetValue(clear) ? []
                : JsonSerializer.Deserialize<UnitTagsView>(await client.SendAsync(HttpMethod.Get, path, null, ct), JsonSerializerOptions.Web)!.Tags;
            var next = current.Concat(adding).Except(removing, StringComparer.Ordinal).Distinct(StringComparer.Ordinal).ToList();
            Print(await client.SendJsonAsync(HttpMethod.Put, path, new UnitTagsRequest(next), ct));
            return 0;
        }));
        yield return tag;

        var which = new Argument<string?>("tag") { Description = "list the units carrying this tag (none: every tag and its count)", Arity = ArgumentArity.ZeroOrOne };
        var tagged = WithConnection(new Command("tagged", "the tags in use, or the units carrying one") { which }, connection);
        tagged.SetAction((r, ct) => guard(async () =>
        {
            using var client = connect(r);
            var t = r.GetValue(which);
            if (t is null)
            {
                foreach (var c in JsonSerializer.Deserialize<List<TagCount>>(await client.SendAsync(HttpMethod.Get, FleetApi.TagsRoute, null, ct), JsonSerializerOptions.Web)!)
                {
                    Console.WriteLine($"{c.Tag,-32} {c.Units} unit(s)");
                }
                return 0;
            }
            var units = JsonSerializer.Deserialize(await client.SendAsync(HttpMethod.Get, $"{FleetApi.TagsRoute}/{Uri.EscapeDataString(t)}/units", null, ct),
                Tsunagu.Protocol.ProtocolJson.Default.ListUnitView)!;
            foreach (var u in units) { Console.WriteLine($"{u.Mac}  {u.Pattern ?? "-",-16} {u.State}"); }
            return 0;
        }));
        yield return tagged;
    }

    /// <summary>`group create NAME (--mac M... | filter options) [--window W]`, `group list`, `group show NAME`, `group delete NAME`, `group window NAME (W | --clear)`.</summary>
    public static Command Group(Option[] connection, Func<ParseResult, OperatorClient> connect, Func<Func<Task<int>>, Task<int>> guard)
    {
        var name = new Argument<string>("name") { Description = "group name" };
        var macs = new Option<string[]>("--mac") { Description = "a static group: these units", AllowMultipleArgumentsPerToken = true };
        var pattern = new Option<string?>("--pattern") { Description = "a dynamic group: units on this install pattern" };
        var board = new Option<string?>("--board") { Description = "... of this hardware version" };
        var app = new Option<string?>("--app") { Description = "... running this application (with --version: at that version)" };
        var version = new Option<string?>("--version") { Description = "the version of --app" };
        var tags = new Option<string[]>("--tag") { Description = "... carrying all of these tags", AllowMultipleArgumentsPerToken = true };
        var online = new Option<bool?>("--online") { Description = "... online (true) or offline (false) now" };
        var window = new Option<string?>("--window") { Description = "its maintenance window in each unit's local time, e.g. \"mon-fri 01:00-05:00\" (updates below importance 5 of its rollouts wait for it)" };
        var create = WithConnection(new Command("create", "create a static (--mac) or dynamic (filter options) group") { name, macs, pattern, board, app, version, tags, online, window }, connection);
        create.SetAction((r, ct) => guard(async () =>
        {
            using var client = connect(r);
            var list = r.GetValue(macs) ?? [];
            var filter = new GroupFilter(r.GetValue(pattern), r.GetValue(board), r.GetValue(app), r.GetValue(version),
                r.GetValue(tags) is { Length: > 0 } t ? t : null, r.GetValue(online));
            Print(await client.SendJsonAsync(HttpMethod.Post, FleetApi.GroupsRoute, new NewGroup(r.GetValue(name), list.Length > 0 ? list : null, list.Length > 0 ? null : filter, r.GetValue(window)), ct));
            return 0;
        }));
        var list = WithConnection(new Command("list", "every group and how many units it holds now"), connection);
        list.SetAction((r, ct) => guard(async () =>
        {
            using var client = connect(r);
            foreach (var g in JsonSerializer.Deserialize<List<GroupView>>(await client.SendAsync(HttpMethod.Get, FleetApi.GroupsRoute, null, ct), JsonSerializerOptions.Web)!)
            {
                Console.WriteLine($"{g.Name,-24} {g.Kind,-8} {g.MemberCount,6} unit(s){(g.Window is { } w ? $"  window {w}" : "")}");
            }
            return 0;
        }));
        var show = WithConnection(new Command("show", "a group's definition and its units now") { name }, connection);
        show.SetAction((r, ct) => guard(async () =>
        {
            using var client = connect(r);
            Print(await client.SendAsync(HttpMethod.Get, $"{FleetApi.GroupsRoute}/{Uri.EscapeDataString(r.GetValue(name)!)}", null, ct));
            return 0;
        }));
        var delete = WithConnection(new Command("delete", "delete a group (not while a rollout moves it)") { name }, connection);
        delete.SetAction((r, ct) => guard(async () =>
        {
            using var client = connect(r);
            await client.SendAsync(HttpMethod.Delete, $"{FleetApi.GroupsRoute}/{Uri.EscapeDataString(r.GetValue(name)!)}", null, ct);
            Console.WriteLine($"deleted group {r.GetValue(name)}");
            return 0;
        }));
        var windowText = new Argument<string?>("window") { Description = "e.g. \"mon-fri 01:00-05:00\"", Arity = ArgumentArity.ZeroOrOne };
        var clearWindow = new Option<bool>("--clear") { Description = "clear the group's window (the group then follows only the update policy)" };
        var setWindow = WithConnection(new Command("window", "set a group's maintenance window, or clear it with --clear") { name, windowText, clearWindow }, connection);
        setWindow.SetAction((r, ct) => guard(async () =>
        {
            var window = r.GetValue(windowText);
            var clear = r.GetValue(clearWindow);
            if (clear == (window is not null))
            {
                throw new ArgumentException(clear ? "give a window or --clear, not both" : "give the window (e.g. \"mon-fri 01:00-05:00\") or --clear");
            }
            using var client = connect(r);
            Print(await client.SendJsonAsync(HttpMethod.Put, $"{FleetApi.GroupsRoute}/{Uri.EscapeDataString(r.GetValue(name)!)}/window", new GroupWindowRequest(window), ct));
            return 0;
        }));
        return new Command("group", "groups of units: static lists or filters") { create, list, show, delete, setWindow };
    }

    /// <summary>"5%,15%,80%" or "10,50,100%": each wave a count or a percent of the group.</summary>
    public static List<WaveSpec> ParseWaves(string text)
    {
        var (waves, error) = RolloutEngine.ParseWaves(text);
        return waves ?? throw new ArgumentException("--" + error);
    }

    /// <summary>The per-wave progress table of a rollout.</summary>
    public static void PrintRollout(RolloutView v)
    {
        Console.WriteLine($"rollout {v.Name}: {v.State}{(v.Reason is null ? "" : $" ({v.Reason})")}");
        Console.WriteLine($"  group {v.Group}, {v.FromPattern} -> {v.ToPattern} by {v.UpdateId}; success {v.SuccessPercent}%, error {v.ErrorPercent}% ({v.OnError})");
        Console.WriteLine($"  {"wave",-6}{"open",-6}{"units",7}{"pending",9}{"downloading",13}{"installed",11}{"failed",8}{"offline",9}");
        foreach (var w in v.Waves.Append(v.Total))
        {
            var label = w.Wave == 0 ? "all" : $"{w.Wave} ({v.WaveSpecs[w.Wave - 1]})";
            Console.WriteLine($"  {label,-6}{(w.Wave == 0 ? "" : w.Open ? "yes" : "no"),-6}{w.Members,7}{w.Pending,9}{w.Downloading,13}{w.Installed,11}{w.Failed,8}{w.Offline,9}");
        }
        if (v.ReturnCounts is { } counts)
        {
            Console.WriteLine($"  returned by the abort: {counts.Total} unit(s): {counts.Returning} returning, {counts.Returned} returned, {counts.Cannot} cannot return, {counts.Ended} ended by a new target");
        }
        foreach (var m in v.Returns ?? []) { Console.WriteLine($"  {m.Mac}: {m.Outcome}"); }
        if (v.ReturnCounts is { } all && all.Total > (v.Returns?.Count ?? 0))
        {
            Console.WriteLine($"  and {all.Total - (v.Returns?.Count ?? 0)} more: tsunagu rollout returns {v.Name}");
        }
        if (v.NeverOffered is { Count: > 0 } never)
        {
            Console.WriteLine($"  never offered the update in the group's window: {v.NeverOfferedCount ?? never.Count} unit(s)");
            foreach (var m in never) { Console.WriteLine($"  {m.Mac}: own hours {m.OwnHours}"); }
            if ((v.NeverOfferedCount ?? never.Count) > never.Count) { Console.WriteLine($"  and {v.NeverOfferedCount - never.Count} more: tsunagu rollout never-offered {v.Name}"); }
        }
    }

    /// <summary>`rollout create|list|show|pause|resume|abort|stop`.</summary>
    public static Command Rollout(Option[] connection, Func<ParseResult, OperatorClient> connect, Func<Func<Task<int>>, Task<int>> guard)
    {
        var name = new Argument<string>("name") { Description = "rollout name" };
        var group = new Option<string>("--group") { Description = "the group whose units move", Required = true };
        var from = new Option<string>("--from") { Description = "the install pattern they leave", Required = true };
        var to = new Option<string>("--to") { Description = "the install pattern they move to (an update program must lead there)", Required = true };
        var waves = new Option<string>("--waves") { Description = "the waves, in order: counts or percents of the group, or group:NAME (its units), e.g. 5%,15%,80% or group:canary,50%,100%", Required = true };
        var success = new Option<int?>("--success") { Description = "percent of a wave's reachable units installed that opens the next (default 90)" };
        var error = new Option<int?>("--error") { Description = "percent of the open waves' units failed that stops the rollout (default 10)" };
        var onError = new Option<string?>("--on-error") { Description = "pause (default), abort, or revert (abort and return the units moved) at the error threshold" };
        var minWave = new Option<int?>("--min-wave-seconds") { Description = "how long a wave stays open at least (default 0)" };
        var create = WithConnection(new Command("create", "start a staged rollout: wave 1 opens at once") { name, group, from, to, waves, success, error, onError, minWave }, connection);
        create.SetAction((r, ct) => guard(async () =>
        {
            using var client = connect(r);
            var request = new NewRollout(r.GetValue(name), r.GetValue(group), r.GetValue(from), r.GetValue(to), ParseWaves(r.GetValue(waves)!),
                r.GetValue(success), r.GetValue(error), r.GetValue(onError), r.GetValue(minWave));
            PrintRollout(JsonSerializer.Deserialize<RolloutView>(await client.SendJsonAsync(HttpMethod.Post, RolloutsApi.Route, request, ct), JsonSerializerOptions.Web)!);
            return 0;
        }));
        var list = WithConnection(new Command("list", "every rollout and its state"), connection);
        list.SetAction((r, ct) => guard(async () =>
        {
            using var client = connect(r);
            foreach (var v in JsonSerializer.Deserialize<List<RolloutView>>(await client.SendAsync(HttpMethod.Get, RolloutsApi.Route, null, ct), JsonSerializerOptions.Web)!)
            {
                Console.WriteLine($"{v.Name,-24} {v.State,-10} wave {v.OpenWaves}/{v.Waves.Count}  {v.Total.Installed}/{v.Total.Members} installed, {v.Total.Failed} failed");
            }
            return 0;
        }));
        var json = new Option<bool>("--json") { Description = "the rollout as JSON" };
        var show = WithConnection(new Command("show", "a rollout with its progress per wave") { name, json }, connection);
        show.SetAction((r, ct) => guard(async () =>
        {
            using var client = connect(r);
            var body = await client.SendAsync(HttpMethod.Get, $"{RolloutsApi.Route}/{Uri.EscapeDataString(r.GetValue(name)!)}", null, ct);
            if (r.GetValue(json)) { Print(body); }
            else { PrintRollout(JsonSerializer.Deserialize<RolloutView>(body, JsonSerializerOptions.Web)!); }
            return 0;
        }));
        var command = new Command("rollout", "staged rollouts: move a group from one install pattern to another, wave by wave") { create, list, show };
        foreach (var (members, what) in new[] { ("returns", "every unit an abort returned and its outcome"), ("never-offered", "every unit the rollout never offers the update in its window") })
        {
            var all = WithConnection(new Command(members, what + ", a page at a time") { name }, connection);
            all.SetAction((r, ct) => guard(async () =>
            {
                using var client = connect(r);
                string? after = null;
                while (true)
                {
                    var path = $"{RolloutsApi.Route}/{Uri.EscapeDataString(r.GetValue(name)!)}/{members}?limit={RolloutsApi.MaxPage}" + (after is null ? "" : $"&after={after}");
                    var page = JsonSerializer.Deserialize<List<JsonElement>>(await client.SendAsync(HttpMethod.Get, path, null, ct), JsonSerializerOptions.Web)!;
                    foreach (var m in page)
                    {
                        Console.WriteLine(string.Join("  ", m.EnumerateObject().Select(p => p.Value.ToString())));
                    }
                    if (page.Count < RolloutsApi.MaxPage) { return 0; }
                    after = page[^1].GetProperty("mac").GetString();
                }
            }));
            command.Subcommands.Add(all);
        }
        var revert = new Option<bool>("--revert") { Description = "abort: units the rollout moved (or is moving) return to the pattern they ran before" };
        foreach (var action in new[] { "pause", "resume", "abort" })
        {
            var act = WithConnection(new Command(action, $"{action} a rollout") { name }, connection);
            if (action == "abort") { act.Options.Add(revert); }
            act.SetAction((r, ct) => guard(async () =>
            {
                using var client = connect(r);
                var path = $"{RolloutsApi.Route}/{Uri.EscapeDataString(r.GetValue(name)!)}/{action}";
                var body = action == "abort" && r.GetValue(revert)
                    ? await client.SendJsonAsync(HttpMethod.Post, path, new AbortRequest(AbortChoices.Revert), ct)
                    : await client.SendAsync(HttpMethod.Post, path, null, ct);
                PrintRollout(JsonSerializer.Deserialize<RolloutView>(body, JsonSerializerOptions.Web)!);
                return 0;
            }));
            command.Subcommands.Add(act);
        }
        var stop = WithConnection(new Command("stop", "emergency stop: pause every running rollout at once"), connection);
        stop.SetAction((r, ct) => guard(async () =>
        {
            using var client = connect(r);
            var paused = JsonSerializer.Deserialize<EmergencyStopResponse>(await client.SendAsync(HttpMethod.Post, RolloutsApi.Route + "/emergency-stop", null, ct), JsonSerializerOptions.Web)!;
            Console.WriteLine(paused.Paused.Count == 0 ? "no rollout was running" : $"paused: {string.Join(", ", paused.Paused)}");
            return 0;
        }));
        command.Subcommands.Add(stop);
        return command;
    }
}
