namespace Tsunagu.Protocol;

/// <summary>
/// When an update of a given importance may run (patent 0048, 0064). Evaluated by the host at version check
/// and again by the unit before it installs:
/// 5 at once; 4 when CPU and WAN use are under the thresholds; 3 inside the unit's low-utilisation window;
/// 1-2 only inside the maintenance window. A forced check (the operator's emergency, patent 0053/0071) runs
/// any importance at once.
/// </summary>
public static class ImportancePolicy
{
    public static bool MayRunNow(int importance, UnitLoad load, UpdatePolicy policy, DateTimeOffset localNow, bool forced) =>
        Decide(importance, load, policy, localNow, forced) is null;

    /// <summary>Null when the update may run now, else why it waits.</summary>
    public static string? Decide(int importance, UnitLoad load, UpdatePolicy policy, DateTimeOffset localNow, bool forced)
    {
        if (forced || importance >= 5)
        {
            return null;
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
    }
}
