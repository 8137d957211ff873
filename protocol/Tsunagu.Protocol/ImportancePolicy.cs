namespace Tsunagu.Protocol;

/// <summary>
/// When an update of a given importance may run (patent 0048, 0064). Evaluated by the host at version check
/// and again by the unit before it installs:
/// 5 at once; 4 when CPU and WAN use are under the thresholds; 3 inside the unit's low-utilisation window; 4 and 3
/// also only while the host's own load is under its threshold (the host's decision only);
/// 1-2 only inside the maintenance window. A unit with a maintenance window of its own (<see cref="UpdatePolicy.UnitWindow"/>)
/// takes 4 and below only inside it: 4 when the load allows too, 3 and below in it instead of the policy's hours. A forced check (the operator's emergency, patent 0053/0071) runs
/// any importance at once; a configuration push does not force (<see cref="PushMessage.ForcesUpdates"/>). The window hours
/// are in the policy's time zone (<see cref="UpdatePolicy.TimeZone"/>, the unit's), on host and unit alike.
/// </summary>
public static class ImportancePolicy
{
    public static bool MayRunNow(int importance, UnitLoad load, UpdatePolicy policy, DateTimeOffset localNow, bool forced) =>
        Decide(importance, load, policy, localNow, forced) is null;

    /// <summary>
    /// Null when the update may run now, else why it waits. <paramref name="hostLoad"/>: the host's own load now (a
    /// fraction; the host passes it, the unit cannot): importance 4 and 3 also wait while it is at or above
    /// <see cref="UpdatePolicy.HostLoadThreshold"/>; 5, 1-2 and a forced check do not look at it.
    /// </summary>
    public static string? Decide(int importance, UnitLoad load, UpdatePolicy policy, DateTimeOffset localNow, bool forced, double? hostLoad = null)
    {
        if (forced || importance >= 5)
        {
            return null;
        }
        if (importance is 3 or 4 && hostLoad is { } host && host >= policy.HostLoadThreshold && Decide(importance, load, policy, localNow, forced) is null)
        {
            return $"importance {importance} waits for the host's load < {policy.HostLoadThreshold:P0} (now {host:P0})";
        }
        if (policy.UnitWindow is { } text)
        {
            // the unit's own window: one that does not read is held closed (only its writer stores it), never "always open"
            if (MaintenanceWindow.Parse(text).Window is not { } own)
            {
                return $"importance {importance} waits: the unit's maintenance window does not read; the operator sets it again or forces a check";
            }
            if (!own.IsOpen(localNow))
            {
                return $"importance {importance} waits for the unit's maintenance window {own}";
            }
            if (importance < 4) { return null; }
        }
        return importance switch
        {
            4 => load.Cpu < policy.CpuThreshold && load.Wan < policy.WanThreshold
                ? null
                : $"importance 4 waits for cpu < {policy.CpuThreshold:P0} and wan < {policy.WanThreshold:P0} (now {load.Cpu:P0}, {load.Wan:P0})",
            3 => InWindow(localNow.Hour, policy.LowWindowStartHour, policy.LowWindowEndHour)
                ? null
                : $"importance 3 waits for the low-utilisation window {policy.LowWindowStartHour:00}:00-{policy.LowWindowEndHour:00}:00",
            _ => InWindow(localNow.Hour, policy.MaintenanceStartHour, policy.MaintenanceEndHour)
                ? null
                : $"importance {importance} waits for the maintenance window {policy.MaintenanceStartHour:00}:00-{policy.MaintenanceEndHour:00}:00 or a forced check",
        };
    }

    /// <summary>
    /// The clock window an update of <paramref name="importance"/> waits for under <paramref name="policy"/>, as a test
    /// of the unit's wall clock: the unit's own window when it has one (one that does not read is never open), else the
    /// low-utilisation hours (3) or the maintenance hours (1-2); null for 4 without a window of the unit's and for 5.
    /// </summary>
    public static Func<DateTimeOffset, bool>? ClockWindow(int importance, UpdatePolicy policy)
    {
        if (importance >= 5) { return null; }
        if (policy.UnitWindow is { } text)
        {
            var own = MaintenanceWindow.Parse(text).Window;
            return local => own is not null && own.IsOpen(local);
        }
        return importance switch
        {
            4 => null,
            3 => local => InWindow(local.Hour, policy.LowWindowStartHour, policy.LowWindowEndHour),
            _ => local => InWindow(local.Hour, policy.MaintenanceStartHour, policy.MaintenanceEndHour),
        };
    }

    /// <summary>The zone the policy's hours are in: its <see cref="UpdatePolicy.TimeZone"/> when known, else <paramref name="fallback"/>.</summary>
    public static TimeZoneInfo Zone(UpdatePolicy policy, TimeZoneInfo fallback) =>
        policy.TimeZone is { } id && TryZone(id, out var zone) ? zone : fallback;

    /// <summary>The local time in the policy's zone at <paramref name="utcNow"/>.</summary>
    public static DateTimeOffset LocalNow(UpdatePolicy policy, DateTimeOffset utcNow, TimeZoneInfo fallback) =>
        TimeZoneInfo.ConvertTime(utcNow, Zone(policy, fallback));

    /// <summary>True when <paramref name="id"/> names a time zone this system knows (IANA ids; at most 64 characters of [A-Za-z0-9/_+-]).</summary>
    public static bool TryZone(string id, out TimeZoneInfo zone)
    {
        zone = TimeZoneInfo.Utc;
        if (id.Length is 0 or > 64 || !id.All(c => char.IsAsciiLetterOrDigit(c) || c is '/' or '_' or '+' or '-')) { return false; }
        try
        {
            zone = TimeZoneInfo.FindSystemTimeZoneById(id);
            return true;
        }
        catch (Exception e) when (e is TimeZoneNotFoundException or InvalidTimeZoneException)
        {
            return false;
        }
    }

    /// <summary>
    /// When an update deferred now should be looked at again: importance 4 (waiting for load) after <paramref name="loadRecheck"/>,
    /// or, when the unit's own window (<see cref="UpdatePolicy.UnitWindow"/>) is closed, at its next opening;
    /// 3 and below at the next opening of their window (<see cref="ClockWindow"/>) in the policy's zone (found to the
    /// minute, so DST changes and half-hour zones are right, within the next 8 days: every recurring window opens in a
    /// week); null when it may run now or its window never opens.
    /// </summary>
    public static DateTimeOffset? NextLook(int importance, UpdatePolicy policy, DateTimeOffset utcNow, TimeZoneInfo fallback, TimeSpan loadRecheck)
    {
        if (importance >= 5) { return null; }
        var zone = Zone(policy, fallback);
        var window = ClockWindow(importance, policy);
        if (importance == 4 && (window is null || window(TimeZoneInfo.ConvertTime(utcNow, zone)))) { return utcNow + loadRecheck; }
        if (window is null) { return null; }
        var minute = new DateTimeOffset(utcNow.UtcTicks - utcNow.UtcTicks % TimeSpan.TicksPerMinute, TimeSpan.Zero).AddMinutes(1);
        for (var i = 0; i < 8 * 24 * 60; i++, minute = minute.AddMinutes(1))
        {
            if (window(TimeZoneInfo.ConvertTime(minute, zone))) { return minute; }
        }
        return null;
    }

    /// <summary>True when <paramref name="hour"/> is in [start, end), wrapping past midnight when start > end; start == end is never.</summary>
    public static bool InWindow(int hour, int start, int end) =>
        start <= end ? hour >= start && hour < end : hour >= start || hour < end;

    public static void Validate(UpdatePolicy policy)
    {
        if (!double.IsFinite(policy.CpuThreshold) || policy.CpuThreshold is <= 0 or > 1) { throw new ArgumentException($"cpuThreshold: {policy.CpuThreshold} is outside (0, 1]"); }
        if (!double.IsFinite(policy.WanThreshold) || policy.WanThreshold is <= 0 or > 1) { throw new ArgumentException($"wanThreshold: {policy.WanThreshold} is outside (0, 1]"); }
        foreach (var (name, hour) in new[] { ("lowWindowStartHour", policy.LowWindowStartHour), ("lowWindowEndHour", policy.LowWindowEndHour),
                     ("maintenanceStartHour", policy.MaintenanceStartHour), ("maintenanceEndHour", policy.MaintenanceEndHour) })
        {
            if (hour is < 0 or > 23) { throw new ArgumentException($"{name}: {hour} is not an hour (0..23)"); }
        }
        if (!double.IsFinite(policy.HostLoadThreshold) || policy.HostLoadThreshold is <= 0 or > 1) { throw new ArgumentException($"hostLoadThreshold: {policy.HostLoadThreshold} is outside (0, 1]"); }
        if (policy.TimeZone is { } zone && !TryZone(zone, out _)) { throw new ArgumentException($"timeZone: '{zone}' is not a known time zone id (e.g. Asia/Tokyo)"); }
        if (policy.UnitWindow is not null)
        {
            throw new ArgumentException("unitWindow: a unit's own maintenance window is set per unit (PUT /api/v1/units/{mac}/update-window), not in the fleet's policy");
        }
    }
}
