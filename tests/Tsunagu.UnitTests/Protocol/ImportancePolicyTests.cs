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

    [TestCase(23, 22, 4, true)]
    [TestCase(3, 22, 4, true)]
    [TestCase(4, 22, 4, false)]
    [TestCase(12, 22, 4, false)]
    [TestCase(2, 2, 5, true)]
    public void Low_utilisation_window_wraps_past_midnight(int hour, int start, int end, bool inside) =>
        Assert.That(ImportancePolicy.InWindow(hour, start, end), Is.EqualTo(inside));
}
