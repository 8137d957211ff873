using Tsunagu.Protocol;

namespace Tsunagu.Firmware.Supervision;

/// <summary>
/// When an update of a given importance may run (patent 0048, 0064): 5 at once; 4 when CPU and WAN use are
/// under the host's thresholds; 3 inside the low-utilisation window; 1-2 only when the operator forces a check.
/// A forced check (emergency, patent 0053/0071) runs any importance at once.
/// </summary>
public static class ImportancePolicy
{
    public static bool MayRunNow(int importance, UnitLoad load, UpdatePolicy policy, DateTimeOffset localNow, bool forced)
    {
        if (forced || importance >= 5)
        {
            return true;
        }
        return importance switch
        {
            4 => load.Cpu < policy.CpuThreshold && load.Wan < policy.WanThreshold,
            3 => InWindow(localNow.Hour, policy.LowWindowStartHour, policy.LowWindowEndHour),
            _ => false,
        };
    }

    /// <summary>True when <paramref name="hour"/> is in [start, end), wrapping past midnight when start > end.</summary>
    public static bool InWindow(int hour, int start, int end) =>
        start <= end ? hour >= start && hour < end : hour >= start || hour < end;
}
