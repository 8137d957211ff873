using System.CommandLine;
using System.Text.Json;
using Tsunagu.Cli.Factory;
using Tsunagu.Server.Units.Windows;

namespace Tsunagu.Cli;

/// <summary>
/// `tsunagu units window MAC [--start H --end H | --maintenance-window WINDOW] [--time-zone ZONE]`: a unit's own
/// importance-3 hours or recurring maintenance window, and its time zone.
/// </summary>
public static class UpdateWindowCommands
{
    public static Command Window(Option[] connection, Func<ParseResult, OperatorClient> connect, Func<Func<Task<int>>, Task<int>> guard)
    {
        var mac = new Argument<string>("mac") { Description = "unit MAC" };
        var start = new Option<int?>("--start") { Description = "first local hour of the unit's low-utilisation window (0..23; with --end)" };
        var end = new Option<int?>("--end") { Description = "local hour the window ends (exclusive, 0..23; wraps past midnight)" };
        var zone = new Option<string?>("--time-zone") { Description = "the unit's time zone, an IANA id such as Asia/Tokyo" };
        var window = new Option<string?>("--maintenance-window")
        {
            Description = "the unit's own recurring maintenance window, e.g. 'mon-fri 01:00-05:00' (every update below importance 5 waits for it; " +
                          "instead of --start/--end); 'none' clears it",
        };
        var fleet = new Option<bool>("--fleet") { Description = "forget the unit's own hours, window and zone: the fleet's policy applies" };
        var command = new Command("window", "show a unit's update window and time zone, or set them with --start/--end, --maintenance-window, --time-zone (or --fleet)")
        {
            mac, start, end, window, zone, fleet,
        };
        ApiCommands.WithConnection(command, connection);
        command.SetAction((r, ct) => guard(async () =>
        {
            using var client = connect(r);
            var path = $"/api/v1/units/{Uri.EscapeDataString(r.GetValue(mac)!)}/update-window";
            var set = r.GetValue(start) is not null || r.GetValue(end) is not null || r.GetValue(zone) is not null || r.GetValue(window) is not null || r.GetValue(fleet);
            var json = set
                ? await client.SendJsonAsync(HttpMethod.Put, path, r.GetValue(fleet) ? new UpdateWindowRequest(null, null, null)
                    : Merge(await client.SendAsync(HttpMethod.Get, path, null, ct), r.GetValue(start), r.GetValue(end), r.GetValue(window), r.GetValue(zone)), ct)
                : await client.SendAsync(HttpMethod.Get, path, null, ct);
            Console.WriteLine(ApiCommands.Format(json));
            return 0;
        }));
        return command;
    }

    /// <summary>
    /// The PUT replaces hours, maintenance window and zone together: what the operator did not give keeps the unit's own
    /// value (from the current view), so `--time-zone` alone does not drop the unit's hours or window, nor `--start/--end`
    /// its zone. Hours and a window exclude each other: giving one replaces the other (giving both is the server's 400).
    /// </summary>
    private static UpdateWindowRequest Merge(string currentJson, int? start, int? end, string? window, string? zone)
    {
        var current = JsonSerializer.Deserialize<UpdateWindowView>(currentJson, JsonSerializerOptions.Web)
            ?? throw new InvalidOperationException("the server answered the update window with an empty body");
        var keep = start is null && end is null && window is null;
        var (s, e) = keep && current.OwnWindow ? (current.LowWindowStartHour, current.LowWindowEndHour) : (start, end);
        var own = window is null ? (keep ? current.MaintenanceWindow : null) : window.Equals("none", StringComparison.OrdinalIgnoreCase) ? null : window;
        return new UpdateWindowRequest(s, e, zone ?? (current.OwnTimeZone ? current.TimeZone : null), own);
    }
}
