using CsCheck;
using Tsunagu.Protocol;
using Tsunagu.Server.Data;
using Tsunagu.Server.Fleet;

namespace Tsunagu.UnitTests.Server;

/// <summary>
/// A group window with the importance policy (<see cref="GroupWindows"/>): whether the two ever meet, which policy window
/// an importance waits for, and when a window opens between two looks, on clocks that change for DST.
/// </summary>
public class GroupWindowsTests
{
    private static MaintenanceWindow W(string text) => MaintenanceWindow.Parse(text).Window!;

    /// <summary>A Sunday at midnight: the week the oracles scan minute by minute.</summary>
    private static readonly DateTimeOffset Week = new(2026, 1, 4, 0, 0, 0, TimeSpan.Zero);

    /// <summary>The old rule, kept here as the oracle: both open at some minute of a week starting on a Sunday, minute by minute.</summary>
    private static bool MinuteScan(MaintenanceWindow window, PolicyWindow hours)
    {
        for (var minute = 0; minute < 7 * 24 * 60; minute++)
        {
            var local = Week.AddMinutes(minute);
            if (window.IsOpen(local) && hours.IsOpen(local)) { return true; }
        }
        return false;
    }

    /// <summary>Minutes drawn so that an hour's first and last minute (HH:00, HH:59), where the hour table's edges are, come up often.</summary>
    private static readonly Gen<int> Minute = Gen.OneOf(Gen.Const(0), Gen.Const(59), Gen.Int[0, 59]);
    private static readonly Gen<string> Hhmm = Gen.Select(Gen.Int[0, 23], Minute, (h, m) => $"{h:00}:{m:00}");

    /// <summary>The old hour table, kept here as the oracle: each minute of a week starting on a Sunday.</summary>
    private static bool[] HoursByScan(MaintenanceWindow window)
    {
        var open = new bool[24];
        for (var minute = 0; minute < 7 * 24 * 60; minute++)
        {
            var local = Week.AddMinutes(minute);
            open[local.Hour] |= window.IsOpen(local);
        }
        return open;
    }

    [Test]
    public void The_hour_table_worked_out_from_the_window_s_edges_is_the_minute_by_minute_table()
    {
        Windows.Sample(window => Assert.That(GroupWindows.HoursOpen(window), Is.EqualTo(HoursByScan(window)), $"{window}"), iter: 300);
    }

    [TestCase("12:00-12:01", new[] { 12 })]                 // one minute
    [TestCase("12:59-13:00", new[] { 12 })]                 // one minute, the hour's last
    [TestCase("23:59-00:00", new[] { 23 })]                 // one minute before midnight
    [TestCase("00:00-00:01", new[] { 0 })]
    [TestCase("00:00-23:59", null)]                         // every hour (23:00-23:58 of each day)
    [TestCase("01:00-05:00", new[] { 1, 2, 3, 4 })]         // ends exactly on the hour: 05 is not open
    [TestCase("01:30-05:00", new[] { 1, 2, 3, 4 })]
    [TestCase("22:00-02:00", new[] { 0, 1, 22, 23 })]       // past midnight
    [TestCase("sat 23:59-00:01", new[] { 0, 23 })]          // past midnight into Sunday, one minute each side
    [TestCase("sun 23:00-01:00", new[] { 0, 23 })]          // past midnight into Monday, from the week's last day
    public void The_hour_table_at_the_edges_of_hours_and_days(string window, int[]? hours)
    {
        var expected = Enumerable.Range(0, 24).Select(h => hours is null || hours.Contains(h)).ToArray();
        Assert.That(GroupWindows.HoursOpen(W(window)), Is.EqualTo(expected));
        Assert.That(HoursByScan(W(window)), Is.EqualTo(expected), "the oracle");
    }
    private static readonly Gen<string> Days = Gen.OneOf("daily", "mon", "sat,sun", "fri-mon", "tue-wed", "sun", "sat", "mon,wed,fri");

    /// <summary>Random group windows as an operator writes them (days, then a start and an end that differ).</summary>
    private static readonly Gen<MaintenanceWindow> Windows =
        Gen.Select(Days, Hhmm, Hhmm).Where(t => t.Item2 != t.Item3).Select(t => W($"{t.Item1} {t.Item2}-{t.Item3}"));

    [TestCase("mon-fri 01:00-05:00", 2, 5, true)]
    [TestCase("mon-fri 05:00-08:00", 2, 5, false)]   // meets at 05:00, which the policy's window does not hold
    [TestCase("mon-fri 04:59-08:00", 2, 5, true)]
    [TestCase("sat 23:00-02:00", 2, 5, false)]       // ends as the policy's window starts
    [TestCase("sat 23:00-02:01", 2, 5, true)]        // Sunday 02:00
    [TestCase("12:00-13:00", 22, 2, false)]
    [TestCase("sun 23:30-00:30", 22, 2, true)]
    [TestCase("00:00-23:59", 4, 4, false)]           // a policy window that never opens
    [TestCase("wed 00:00-00:01", 0, 1, true)]
    public void Two_windows_meet_only_when_both_are_open_at_some_minute_of_the_week(string window, int start, int end, bool meet)
    {
        Assert.That(GroupWindows.Overlaps(W(window), new PolicyWindow("w", start, end)), Is.EqualTo(meet));
    }

    [Test]
    public void Overlap_is_the_same_as_some_minute_of_the_week_open_in_both()
    {
        // generated windows, checked against a plain scan of each minute of each day
        var hhmm = Gen.Select(Gen.Int[0, 23], Gen.Int[0, 59], (h, m) => $"{h:00}:{m:00}");
        var days = Gen.OneOf("daily", "mon", "sat,sun", "fri-mon", "tue-wed");
        Gen.Select(days, hhmm, hhmm, Gen.Int[0, 23], Gen.Int[0, 23]).Where(t => t.Item2 != t.Item3).Sample((d, from, to, start, end) =>
        {
            var window = W($"{d} {from}-{to}");
            var hours = new PolicyWindow("w", start, end);
            var any = false;
            for (var day = new DateTimeOffset(2026, 3, 1, 0, 0, 0, TimeSpan.Zero); day < new DateTimeOffset(2026, 3, 8, 0, 0, 0, TimeSpan.Zero) && !any; day = day.AddMinutes(1))
            {
                any = window.IsOpen(day) && ImportancePolicy.InWindow(day.Hour, start, end);
            }
            Assert.That(GroupWindows.Overlaps(window, hours), Is.EqualTo(any), $"{window} with {hours}");
            Assert.That(MinuteScan(window, hours), Is.EqualTo(any), $"the oracle: {window} with {hours}");
        }, iter: 60);
    }

    [Test]
    public void The_hour_lookup_agrees_with_the_minute_by_minute_overlap_on_random_windows_and_hours()
    {
        // own low-utilisation hours are whole hours (HH:00-HH:00): the window's open hours of the day decide, 24 lookups
        var hhmm = Gen.Select(Gen.Int[0, 23], Gen.Int[0, 59], (h, m) => $"{h:00}:{m:00}");
        var days = Gen.OneOf("daily", "mon", "sat,sun", "fri-mon", "tue-wed", "sun");
        Gen.Select(days, hhmm, hhmm, Gen.Int[0, 23], Gen.Int[0, 23]).Where(t => t.Item2 != t.Item3).Sample((d, from, to, start, end) =>
        {
            var window = W($"{d} {from}-{to}");
            var hours = GroupWindows.OwnHours(start, end);
            var slow = MinuteScan(window, hours);
            Assert.That(GroupWindows.Overlaps(window, hours), Is.EqualTo(slow), $"{window} with {hours}");
            Assert.That(GroupWindows.Meets(GroupWindows.HoursOpen(window), hours), Is.EqualTo(slow), $"{window} with {hours}");
            Assert.That(GroupWindows.NeverMeets(window, 3, [new UnitClockRow { Mac = "m", LowWindowStart = start, LowWindowEnd = end }]).Count == 0,
                Is.EqualTo(slow), $"{window} with {hours}");
        }, iter: 200);
    }

    [Test]
    public void A_rollouts_stall_by_the_hour_table_is_the_minute_by_minute_answer_on_random_windows_and_policies()
    {
        // the group window against the policy window each importance waits for: the refusal (or none) is the one the
        // minute-by-minute scan gives, and names the window and hours it was judged on
        var policies = Gen.Select(Gen.Int[0, 23], Gen.Int[0, 23], Gen.Int[0, 23], Gen.Int[0, 23],
            (ls, le, ms, me) => UpdatePolicy.Default with { LowWindowStartHour = ls, LowWindowEndHour = le, MaintenanceStartHour = ms, MaintenanceEndHour = me });
        Gen.Select(Windows, policies, Gen.Int[1, 5]).Sample((window, policy, importance) =>
        {
            var stall = GroupWindows.Stall("g", window, "r", "x-to-y", importance, policy);
            var waits = GroupWindows.For(importance, policy);
            var expected = waits is not null && !MinuteScan(window, waits);
            Assert.That(stall is not null, Is.EqualTo(expected), $"{window}, importance {importance}, {policy}");
            if (stall is not null)
            {
                Assert.That(stall, Does.Contain(window.ToString()).And.Contain(waits!.ToString()).And.Contain($"importance {importance}"));
            }
        }, iter: 300);
    }

    [TestCase(5, null)]
    [TestCase(4, null)]
    [TestCase(3, "low-utilisation window 02:00-05:00")]
    [TestCase(2, "maintenance window 03:00-04:00")]
    [TestCase(1, "maintenance window 03:00-04:00")]
    public void Each_importance_waits_for_its_own_policy_window(int importance, string? waits)
    {
        Assert.That(GroupWindows.For(importance, UpdatePolicy.Default) is { } w ? $"{w.Name} {w}" : null, Is.EqualTo(waits));
    }

    [Test]
    public void A_window_opens_once_between_looks_that_span_its_start_and_is_open_at_the_later_one()
    {
        var window = W("01:00-05:00");
        var utc = TimeZoneInfo.Utc;
        var at = new DateTimeOffset(2026, 4, 2, 0, 0, 0, TimeSpan.Zero);
        Assert.That(GroupWindows.OpenedBetween(window, null, utc, at.AddMinutes(55), at.AddMinutes(60)), Is.True, "the start itself");
        Assert.That(GroupWindows.OpenedBetween(window, null, utc, at.AddMinutes(60), at.AddMinutes(65)), Is.False, "opened at the previous look, not this one");
        Assert.That(GroupWindows.OpenedBetween(window, null, utc, at.AddMinutes(59), at.AddMinutes(59.9)), Is.False, "before the start");
        Assert.That(GroupWindows.OpenedBetween(window, null, utc, at, at.AddHours(6)), Is.False, "opened, but closed again at the later look");
        Assert.That(GroupWindows.OpenedBetween(window, null, utc, at.AddHours(-30), at.AddHours(2)), Is.True, "a long gap: opened and open now");
        Assert.That(GroupWindows.OpenedBetween(window, new PolicyWindow("low", 2, 5), utc, at.AddMinutes(55), at.AddMinutes(65)), Is.False, "the policy's window is still closed");
        Assert.That(GroupWindows.OpenedBetween(window, new PolicyWindow("low", 2, 5), utc, at.AddMinutes(115), at.AddMinutes(120)), Is.True, "both open from 02:00");
    }

    [Test]
    public void On_the_night_clocks_go_forward_a_window_starting_in_the_skipped_hour_opens_when_the_clock_jumps()
    {
        // Paris, 29 March 2026: 02:00 local becomes 03:00 (01:00 UTC); a window 02:30-04:00 opens at the jump
        var paris = TimeZoneInfo.FindSystemTimeZoneById("Europe/Paris");
        var window = W("02:30-04:00");
        var jump = new DateTimeOffset(2026, 3, 29, 1, 0, 0, TimeSpan.Zero);
        Assert.That(GroupWindows.OpenedBetween(window, null, paris, jump.AddMinutes(-5), jump), Is.True);
        Assert.That(GroupWindows.OpenedBetween(window, null, paris, jump, jump.AddMinutes(5)), Is.False);
        // the day after, at 02:30 local (00:30 UTC, summer time)
        var next = new DateTimeOffset(2026, 3, 30, 0, 30, 0, TimeSpan.Zero);
        Assert.That(GroupWindows.OpenedBetween(window, null, paris, next.AddMinutes(-1), next), Is.True);
    }

    [Test]
    public void Looks_that_cover_a_day_in_steps_find_each_opening_exactly_once()
    {
        // any step size: the openings found across consecutive looks are the window's starts, once each
        Gen.Int[1, 180].Sample(minutes =>
        {
            var window = W("mon,wed 22:00-02:00");
            var zone = TimeZoneInfo.FindSystemTimeZoneById("Asia/Kolkata"); // a half-hour zone
            var start = new DateTimeOffset(2026, 4, 5, 0, 7, 0, TimeSpan.Zero); // Sunday
            var found = 0;
            for (var t = start; t < start.AddDays(7); t = t.AddMinutes(minutes))
            {
                if (GroupWindows.OpenedBetween(window, null, zone, t, t.AddMinutes(minutes))) { found++; }
            }
            Assert.That(found, Is.EqualTo(2), $"steps of {minutes} min");
        }, iter: 40);
    }
}
