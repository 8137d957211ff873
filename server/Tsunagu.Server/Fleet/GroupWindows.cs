using Tsunagu.Protocol;
using Tsunagu.Server.Data;

namespace Tsunagu.Server.Fleet;

/// <summary>
/// How a group's maintenance window combines with the importance policy's clock windows. Both are read on the same wall
/// clock, the unit's (its own zone, else the fleet policy's, else the host's), so whether they ever overlap does not
/// depend on the zone: a rollout whose group window never overlaps the window its update's importance waits for would
/// hold its units forever, and is refused.
/// </summary>
public static class GroupWindows
{
    /// <summary>A Sunday at midnight: the week the overlap is looked for in, on a wall clock without DST.</summary>
    private static readonly DateTimeOffset Week = new(2026, 1, 4, 0, 0, 0, TimeSpan.Zero);

    /// <summary>
    /// The clock window of <paramref name="policy"/> an update of <paramref name="importance"/> waits for: 3 the
    /// low-utilisation window, 1-2 the maintenance window; null for 4 (it waits for load, not a clock) and 5 (never waits).
    /// </summary>
    public static PolicyWindow? For(int importance, UpdatePolicy policy) => importance switch
    {
        3 => new("low-utilisation window", policy.LowWindowStartHour, policy.LowWindowEndHour),
        < 3 => new("maintenance window", policy.MaintenanceStartHour, policy.MaintenanceEndHour),
        _ => null,
    };

    /// <summary>
    /// Whether <paramref name="window"/> and the policy's <paramref name="hours"/> are both open at some minute of a week:
    /// the policy's hours are whole hours every day, so the window's open hours of the day decide (<see cref="HoursOpen"/>,
    /// <see cref="Meets"/>), the same table the single-unit and per-member checks use.
    /// </summary>
    public static bool Overlaps(MaintenanceWindow window, PolicyWindow hours) => Meets(HoursOpen(window), hours);

    /// <summary>
    /// Why the units of rollout <paramref name="rollout"/> (update <paramref name="updateId"/> of
    /// <paramref name="importance"/>) would never be offered it in group <paramref name="group"/>'s window; null when
    /// they can be (the windows overlap, or the importance waits for no clock window).
    /// </summary>
    public static string? Stall(string group, MaintenanceWindow window, string rollout, string updateId, int importance, UpdatePolicy policy) =>
        For(importance, policy) is { } hours && !Overlaps(window, hours)
            ? $"group {group}'s maintenance window {window} never overlaps the update policy's {hours.Name} {hours} that importance {importance} " +
              $"waits for (rollout {rollout}, update program {updateId}): its units would never be offered the update"
            : null;

    /// <summary>A unit's own low-utilisation hours (its table row) as a clock window: what importance 3 waits for on that unit.</summary>
    public static PolicyWindow OwnHours(int startHour, int endHour) => new("own low-utilisation hours", startHour, endHour);

    /// <summary>
    /// The hours of the day (0-23) in which <paramref name="window"/> is open at some minute of some day of the week: a
    /// window of whole hours (a <see cref="PolicyWindow"/>, open from HH:00 to HH:00 every day) meets it exactly when one of
    /// its hours is one of these. Within an hour of a day the window opens only at its start (or at HH:00, where a day or
    /// an hour begins), so the hour is open exactly when the window is open at HH:00 or at its start, if its start falls in
    /// that hour: 7 x 25 lookups per window (each day's 24 hours, then its start) instead of the week's 10,080 minutes (a
    /// property test checks it against that scan).
    /// </summary>
    public static bool[] HoursOpen(MaintenanceWindow window)
    {
        var open = new bool[24];
        for (var day = 0; day < 7; day++)
        {
            var midnight = Week.AddDays(day);
            for (var h = 0; h < 24; h++)
            {
                open[h] |= window.IsOpen(midnight.AddHours(h));
            }
            open[window.Start.Hours] |= window.IsOpen(midnight + window.Start);
        }
        return open;
    }

    /// <summary>
    /// Whether <paramref name="hours"/> (whole hours, every day) meet a window open in <paramref name="open"/>
    /// (<see cref="HoursOpen"/>): at most 24 lookups; the same answer as asking, minute by minute over a week, whether
    /// both are open (a property test checks it).
    /// </summary>
    public static bool Meets(bool[] open, PolicyWindow hours)
    {
        for (var h = 0; h < 24; h++)
        {
            if (open[h] && ImportancePolicy.InWindow(h, hours.StartHour, hours.EndHour)) { return true; }
        }
        return false;
    }

    /// <summary>
    /// The units of <paramref name="clocks"/> (each with hours or a maintenance window of its own) that would never be
    /// offered an update of <paramref name="importance"/> in <paramref name="window"/>, sorted by MAC, each with what of
    /// its own stands in the way: its maintenance window (every importance below 5 waits for it; it stands for the hours
    /// too), which never overlaps the group's window or does not read; else, for importance 3, its hours, which never meet it.
    /// </summary>
    public static IReadOnlyList<(string Mac, string Own)> NeverMeets(MaintenanceWindow window, int importance, IEnumerable<UnitClockRow> clocks)
    {
        if (importance >= 5) { return []; }
        var open = HoursOpen(window);
        var overlaps = new Dictionary<string, bool>(StringComparer.Ordinal);
        var found = new List<(string Mac, string Own)>();
        foreach (var unit in clocks)
        {
            if (unit.MaintenanceWindow is { } text)
            {
                if (!overlaps.TryGetValue(text, out var meets))
                {
                    overlaps[text] = meets = MaintenanceWindow.Parse(text).Window is { } own && Overlaps(own, window);
                }
                if (!meets) { found.Add((unit.Mac, OwnWindowLabel + text)); }
            }
            else if (importance == 3 && unit is { LowWindowStart: { } s, LowWindowEnd: { } e } && OwnHours((int)s, (int)e) is var hours && !Meets(open, hours))
            {
                found.Add((unit.Mac, hours.ToString()));
            }
        }
        return [.. found.OrderBy(u => u.Mac, StringComparer.Ordinal)];
    }

    /// <summary>
    /// Why members of rollout <paramref name="rollout"/> (update <paramref name="updateId"/> of <paramref name="importance"/>)
    /// with hours or a maintenance window of their own (<paramref name="clocks"/>) would never be offered it in group
    /// <paramref name="group"/>'s <paramref name="window"/> (<see cref="NeverMeets"/>); null when none would.
    /// </summary>
    public static string? MembersStall(string group, MaintenanceWindow window, string rollout, string updateId, int importance, IReadOnlyList<UnitClockRow> clocks) =>
        NeverMeets(window, importance, clocks) is { Count: > 0 } never
            ? $"group {group}'s maintenance window {window} never meets the {(never.Any(u => u.Own.StartsWith(OwnWindowLabel, StringComparison.Ordinal)) ? "own maintenance windows or hours" : "own low-utilisation hours")} " +
              $"of {never.Count} unit(s) ({string.Join(", ", never.Take(5).Select(u => $"{u.Mac} {u.Own}"))}{(never.Count > 5 ? ", ..." : "")}) " +
              $"that importance {importance} waits for too (rollout {rollout}, update program {updateId}): they would never be offered the update"
            : null;

    /// <summary>How <see cref="NeverMeets"/> names a unit's own maintenance window (its hours are written HH:00-HH:00).</summary>
    public const string OwnWindowLabel = "maintenance window ";

    /// <summary>
    /// Why unit <paramref name="mac"/>, a member of rollout <paramref name="rollout"/>, would never be offered its update
    /// (<paramref name="updateId"/> of <paramref name="importance"/>) with its own low-utilisation <paramref name="hours"/>:
    /// they never meet group <paramref name="group"/>'s <paramref name="window"/>; null when they do, or when the importance
    /// is not 3.
    /// </summary>
    public static string? UnitStall(string mac, PolicyWindow hours, string group, MaintenanceWindow window, string rollout, string updateId, int importance) =>
        importance == 3 && !Overlaps(window, hours)
            ? $"unit {mac}'s own low-utilisation hours {hours} never meet group {group}'s maintenance window {window} that importance 3 waits for too " +
              $"(rollout {rollout}, update program {updateId}): the unit would never be offered the update"
            : null;

    /// <summary>
    /// Whether <paramref name="a"/> and <paramref name="b"/> are both open at some minute of a week on one wall clock
    /// (a scan of the week's 10,080 minutes; both recur weekly, so a week decides).
    /// </summary>
    public static bool Overlaps(MaintenanceWindow a, MaintenanceWindow b)
    {
        for (var minute = Week; minute < Week.AddDays(7); minute = minute.AddMinutes(1))
        {
            if (a.IsOpen(minute) && b.IsOpen(minute)) { return true; }
        }
        return false;
    }

    /// <summary>
    /// Why unit <paramref name="mac"/>, a member of rollout <paramref name="rollout"/>, would never be offered its update
    /// (<paramref name="updateId"/> of <paramref name="importance"/>) with its own maintenance window <paramref name="own"/>:
    /// it never overlaps group <paramref name="group"/>'s <paramref name="window"/>, and every importance below 5 waits for
    /// both; null when they overlap, or for importance 5.
    /// </summary>
    public static string? UnitWindowStall(string mac, MaintenanceWindow own, string group, MaintenanceWindow window, string rollout, string updateId, int importance) =>
        importance < 5 && !Overlaps(own, window)
            ? $"unit {mac}'s own maintenance window {own} never overlaps group {group}'s maintenance window {window} that importance {importance} waits for too " +
              $"(rollout {rollout}, update program {updateId}): the unit would never be offered the update"
            : null;

    /// <summary>
    /// Whether the window (and the policy's hours, and the unit's own window, when given) opened at a whole minute after <paramref name="since"/> and
    /// at or before <paramref name="now"/> on the clock of <paramref name="zone"/>, and is open at <paramref name="now"/>.
    /// Minute by minute, so a DST change or a half-hour zone is right.
    /// </summary>
    public static bool OpenedBetween(MaintenanceWindow window, PolicyWindow? hours, TimeZoneInfo zone, DateTimeOffset since, DateTimeOffset now,
        MaintenanceWindow? unitWindow = null)
    {
        bool Open(DateTimeOffset utc)
        {
            var local = TimeZoneInfo.ConvertTime(utc, zone);
            return window.IsOpen(local) && (hours is null || hours.IsOpen(local)) && (unitWindow is null || unitWindow.IsOpen(local));
        }
        if (now <= since || !Open(now)) { return false; }
        var minute = new DateTimeOffset(since.UtcTicks - since.UtcTicks % TimeSpan.TicksPerMinute, TimeSpan.Zero).AddMinutes(1);
        for (; minute <= now; minute = minute.AddMinutes(1))
        {
            if (Open(minute) && !Open(minute.AddMinutes(-1))) { return true; }
        }
        return false;
    }
}

/// <summary>A clock window of the importance policy: whole hours [start, end), past midnight when start &gt; end, never when equal.</summary>
public sealed record PolicyWindow(string Name, int StartHour, int EndHour)
{
    public bool IsOpen(DateTimeOffset local) => ImportancePolicy.InWindow(local.Hour, StartHour, EndHour);

    public override string ToString() => $"{StartHour:00}:00-{EndHour:00}:00";
}
