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

    // the unit's own window mon-fri 01:00-05:00 on its clock (UTC here); the policy's hours: low 02:00-05:00, maintenance 03:00-04:00.
    // importance, the unit's cpu, local time (2026-11-02 is a Monday), forced, runs now
    [TestCase(5, 0.9, "2026-11-01T12:00", false, true)]   // 5 never waits
    [TestCase(4, 0.1, "2026-11-02T01:30", false, true)]   // in the window, idle
    [TestCase(4, 0.9, "2026-11-02T01:30", false, false)]  // in the window, busy: 4 waits for the load too
    [TestCase(4, 0.1, "2026-11-02T12:00", false, false)]  // idle, outside the window
    [TestCase(4, 0.1, "2026-11-01T02:00", false, false)]  // a Sunday: the window's days count
    [TestCase(3, 0.9, "2026-11-02T01:30", false, true)]   // in the window, outside the policy's low hours: the window stands in for them
    [TestCase(3, 0.1, "2026-11-01T03:00", false, false)]  // in the policy's low hours, on a Sunday: the window is closed
    [TestCase(3, 0.1, "2026-11-06T04:59", false, true)]   // Friday, the window's last minute
    [TestCase(3, 0.1, "2026-11-06T05:00", false, false)]  // its end is not in it
    [TestCase(1, 0.1, "2026-11-02T04:30", false, true)]   // in the window, outside the policy's maintenance hour
    [TestCase(2, 0.1, "2026-11-01T03:30", false, false)]  // the policy's maintenance hour, on a Sunday
    [TestCase(1, 0.9, "2026-11-01T12:00", true, true)]    // a forced check runs anything
    public void A_units_own_maintenance_window_holds_every_importance_below_5(int importance, double cpu, string local, bool forced, bool expected)
    {
        var now = DateTimeOffset.Parse(local + "Z", System.Globalization.CultureInfo.InvariantCulture);
        var policy = new UpdatePolicy(0.5, 0.5, 2, 5, MaintenanceStartHour: 3, MaintenanceEndHour: 4, UnitWindow: "mon-fri 01:00-05:00");
        var why = ImportancePolicy.Decide(importance, new(cpu, 0.1), policy, now, forced, hostLoad: 0.1);
        Assert.That(why is null, Is.EqualTo(expected), why);
        if (why is not null && cpu < 0.5)
        {
            Assert.That(why, Does.Contain("the unit's maintenance window mon,tue,wed,thu,fri 01:00-05:00"), "the reason names the unit's window");
        }
    }

    [Test]
    public void A_units_window_that_does_not_read_holds_its_updates_and_never_counts_as_open()
    {
        var policy = UpdatePolicy.Default with { UnitWindow = "mon-fri 01:00-05:00; reboot" };
        var now = new DateTimeOffset(2026, 11, 2, 3, 0, 0, TimeSpan.Zero);
        foreach (var importance in new[] { 1, 2, 3, 4 })
        {
            Assert.That(ImportancePolicy.Decide(importance, new(0, 0), policy, now, forced: false), Does.Contain("does not read"), $"importance {importance}");
            Assert.That(ImportancePolicy.NextLook(importance, policy, now, TimeZoneInfo.Utc, TimeSpan.FromMinutes(1)), Is.Null, "it never opens");
        }
        Assert.That(ImportancePolicy.Decide(5, new(0, 0), policy, now, forced: false), Is.Null);
        Assert.That(ImportancePolicy.Decide(4, new(0, 0), policy, now, forced: true), Is.Null);
    }

    [Test]
    public void The_unit_looks_again_when_its_own_window_opens_on_its_clock()
    {
        var recheck = TimeSpan.FromMinutes(1);
        var weekdays = UpdatePolicy.Default with { UnitWindow = "mon-fri 01:00-05:00", TimeZone = "Asia/Tokyo" };
        // Friday 12:00 in Tokyo (03:00 UTC): the next opening is Monday 01:00 in Tokyo, Sunday 16:00 UTC, for 4 and below
        var friday = new DateTimeOffset(2026, 11, 6, 3, 0, 0, TimeSpan.Zero);
        var monday = new DateTimeOffset(2026, 11, 8, 16, 0, 0, TimeSpan.Zero);
        foreach (var importance in new[] { 1, 3, 4 })
        {
            Assert.That(ImportancePolicy.NextLook(importance, weekdays, friday, TimeZoneInfo.Utc, recheck), Is.EqualTo(monday), $"importance {importance}");
        }
        // inside the window importance 4 waits for the load only: a short look
        var inside = new DateTimeOffset(2026, 11, 8, 17, 30, 0, TimeSpan.Zero);
        Assert.That(ImportancePolicy.NextLook(4, weekdays, inside, TimeZoneInfo.Utc, recheck), Is.EqualTo(inside + recheck));
        Assert.That(ImportancePolicy.NextLook(5, weekdays, friday, TimeZoneInfo.Utc, recheck), Is.Null);

        // a window once a week, looked for from the minute after it opened: a week on, within the look's 8 days
        var weekly = UpdatePolicy.Default with { UnitWindow = "sun 00:00-00:01" };
        var sunday = new DateTimeOffset(2026, 11, 1, 0, 0, 30, TimeSpan.Zero);
        Assert.That(ImportancePolicy.NextLook(3, weekly, sunday, TimeZoneInfo.Utc, recheck), Is.EqualTo(new DateTimeOffset(2026, 11, 8, 0, 0, 0, TimeSpan.Zero)));

        // Paris springs forward on 2026-03-29 at 02:00 (to 03:00): a window 02:30-03:30 that day opens at 03:00 local, 01:00 UTC
        var paris = UpdatePolicy.Default with { UnitWindow = "sun 02:30-03:30", TimeZone = "Europe/Paris" };
        Assert.That(ImportancePolicy.NextLook(3, paris, new DateTimeOffset(2026, 3, 28, 12, 0, 0, TimeSpan.Zero), TimeZoneInfo.Utc, recheck),
            Is.EqualTo(new DateTimeOffset(2026, 3, 29, 1, 0, 0, TimeSpan.Zero)));
    }

    [Test]
    public void The_fleets_policy_carries_no_units_window() =>
        Assert.That(Assert.Throws<ArgumentException>(() => ImportancePolicy.Validate(UpdatePolicy.Default with { UnitWindow = "01:00-05:00" }))!.Message,
            Does.StartWith("unitWindow: a unit's own maintenance window is set per unit"));

    [TestCase(23, 22, 4, true)]
    [TestCase(3, 22, 4, true)]
    [TestCase(4, 22, 4, false)]
    [TestCase(12, 22, 4, false)]
    [TestCase(2, 2, 5, true)]
    public void Low_utilisation_window_wraps_past_midnight(int hour, int start, int end, bool inside) =>
        Assert.That(ImportancePolicy.InWindow(hour, start, end), Is.EqualTo(inside));
}
