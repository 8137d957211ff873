using Tsunagu.Protocol;

namespace Tsunagu.UnitTests.Protocol;

/// <summary>The importance policy (protocol/Tsunagu.Protocol/ImportancePolicy.cs): when an offered update may run.</summary>
public class ImportancePolicyTests
{
    [TestCase(5, 0.9, 0.9, 14, false, true)]
    [TestCase(4, 0.1, 0.1, 14, false, true)]
    [TestCase(4, 0.9, 0.1, 14, false, false)]
    [TestCase(4, 0.1, 0.9, 14, false, false)]
    [TestCase(3, 0.1, 0.1, 14, false, false)]
    [TestCase(3, 0.9, 0.9, 3, false, true)]
    [TestCase(2, 0.0, 0.0, 12, false, false)]
    [TestCase(2, 0.9, 0.9, 3, false, true)]
    [TestCase(1, 0.0, 0.0, 4, false, false)]
    [TestCase(1, 0.0, 0.0, 12, true, true)]
    [TestCase(4, 0.9, 0.9, 14, true, true)]
    public void Importance_decides_when(int importance, double cpu, double wan, int hour, bool forced, bool expected)
    {
        var now = new DateTimeOffset(2026, 11, 1, hour, 0, 0, TimeSpan.Zero);
        var policy = new UpdatePolicy(0.5, 0.5, 2, 5, MaintenanceStartHour: 3, MaintenanceEndHour: 4);
        Assert.That(ImportancePolicy.MayRunNow(importance, new(cpu, wan), policy, now, forced), Is.EqualTo(expected));
        Assert.That(ImportancePolicy.Decide(importance, new(cpu, wan), policy, now, forced) is null, Is.EqualTo(expected), "Decide agrees and explains");
    }

    // importance, the unit's cpu, hour (UTC), the host's load (-1: not given, the unit's own decision), forced, runs now
    [TestCase(4, 0.1, 14, 0.5, false, true)]
    [TestCase(4, 0.1, 14, 0.79, false, true)]
    [TestCase(4, 0.1, 14, 0.8, false, false)]
    [TestCase(4, 0.1, 14, 1.0, false, false)]
    [TestCase(4, 0.1, 14, -1, false, true)]
    [TestCase(4, 0.9, 14, 0.1, false, false)]
    [TestCase(4, 0.1, 14, 1.0, true, true)]
    [TestCase(3, 0.9, 3, 0.5, false, true)]
    [TestCase(3, 0.9, 3, 0.9, false, false)]
    [TestCase(3, 0.9, 14, 0.1, false, false)]
    [TestCase(5, 0.9, 14, 1.0, false, true)]
    [TestCase(2, 0.1, 3, 1.0, false, true)]
    [TestCase(1, 0.1, 12, 1.0, true, true)]
    public void The_hosts_own_load_holds_back_importance_4_and_3(int importance, double cpu, int hour, double host, bool forced, bool expected)
    {
        var now = new DateTimeOffset(2026, 11, 1, hour, 0, 0, TimeSpan.Zero);
        var policy = new UpdatePolicy(0.5, 0.5, 2, 5, MaintenanceStartHour: 3, MaintenanceEndHour: 4, HostLoadThreshold: 0.8);
        var why = ImportancePolicy.Decide(importance, new(cpu, 0.1), policy, now, forced, host < 0 ? null : host);
        Assert.That(why is null, Is.EqualTo(expected), why);
        if (!expected && host >= 0.8 && ImportancePolicy.Decide(importance, new(cpu, 0.1), policy, now, forced) is null)
        {
            Assert.That(why, Does.Contain("host's load"), "the reason names the host's load when only it holds the update back");
        }
    }

    [TestCase(0.0)]
    [TestCase(1.5)]
    [TestCase(double.NaN)]
    public void A_host_load_threshold_outside_0_to_1_is_refused(double threshold) =>
        Assert.Throws<ArgumentException>(() => ImportancePolicy.Validate(UpdatePolicy.Default with { HostLoadThreshold = threshold }));

    [TestCase(23, 22, 4, true)]
    [TestCase(3, 22, 4, true)]
    [TestCase(4, 22, 4, false)]
    [TestCase(12, 22, 4, false)]
    [TestCase(2, 2, 5, true)]
    public void Low_utilisation_window_wraps_past_midnight(int hour, int start, int end, bool inside) =>
        Assert.That(ImportancePolicy.InWindow(hour, start, end), Is.EqualTo(inside));
}
