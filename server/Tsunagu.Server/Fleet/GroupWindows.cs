using Tsunagu.Protocol;

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
    /// The units of <paramref name="hours"/> (each with its own low-utilisation hours) whose hours never meet
    /// <paramref name="window"/>, sorted by MAC: an update of importance 3 waits for both, so they would never be offered
    /// it. The window's open hours are worked out once (<see cref="HoursOpen"/>), then each unit costs at most 24 lookups.
    /// </summary>
    public static IReadOnlyList<(string Mac, PolicyWindow Hours)> NeverMet(MaintenanceWindow window, IEnumerable<(string Mac, PolicyWindow Hours)> hours)
    {
        var open = HoursOpen(window);
        return [.. hours.Where(u => !Meets(open, u.Hours)).OrderBy(u => u.Mac, StringComparer.Ordinal)];
    }

    /// <summary>How a refusal names units: how many, and the first five with their hours.</summary>
    public static string Name(IReadOnlyList<(string Mac, PolicyWindow Hours)> units) =>
        $"{units.Count} unit(s) ({string.Join(", ", units.Take(5).Select(u => $"{u.Mac} {u.Hours}"))}{(units.Count > 5 ? ", ..." : "")})";

    /// <summary>
    /// Why members of rollout <paramref name="rollout"/> (update <paramref name="updateId"/> of <paramref name="importance"/>)
    /// would never be offered it: <paramref name="never"/>, the members whose own low-utilisation hours never meet group
    /// <paramref name="group"/>'s <paramref name="window"/> (<see cref="NeverMet"/>); null when there are none, or when the
    /// importance is not 3 (only 3 waits for those hours).
    /// </summary>
    public static string? MembersStall(string group, MaintenanceWindow window, string rollout, string updateId, int importance,
        IReadOnlyList<(string Mac, PolicyWindow Hours)> never) =>
        importance == 3 && never.Count > 0
            ? $"group {group}'s maintenance window {window} never meets the own low-utilisation hours of {Name(never)} that importance 3 waits for too " +
              $"(rollout {rollout}, update program {updateId}): they would never be offered the update"
            : null;

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
    /// Whether the window (and the policy's hours, when given) opened at a whole minute after <paramref name="since"/> and
    /// at or before <paramref name="now"/> on the clock of <paramref name="zone"/>, and is open at <paramref name="now"/>.
    /// Minute by minute, so a DST change or a half-hour zone is right.
    /// </summary>
    public static bool OpenedBetween(MaintenanceWindow window, PolicyWindow? hours, TimeZoneInfo zone, DateTimeOffset since, DateTimeOffset now)
    {
        bool Open(DateTimeOffset utc)
        {
            var local = TimeZoneInfo.ConvertTime(utc, zone);
            return window.IsOpen(local) && (hours is null || hours.IsOpen(local));
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
