using CsCheck;
using Tsunagu.Protocol;

namespace Tsunagu.UnitTests.Protocol;

/// <summary>A group's maintenance window: its grammar (what is accepted, how it is written back, what is refused) and when it is open.</summary>
public class MaintenanceWindowTests
{
    [TestCase("01:00-05:00", "01:00-05:00")]
    [TestCase("daily 01:00-05:00", "01:00-05:00")]
    [TestCase("Mon-Fri 01:00-05:00", "mon,tue,wed,thu,fri 01:00-05:00")]
    [TestCase("sat,sun 22:30-06:00", "sun,sat 22:30-06:00")]
    [TestCase("fri-mon 23:00-01:00", "sun,mon,fri,sat 23:00-01:00")]
    [TestCase("  wed   00:00-23:59 ", "wed 00:00-23:59")]
    [TestCase("sun-sat 10:00-11:00", "10:00-11:00")]
    public void A_window_is_read_and_written_back_in_one_form(string text, string written)
    {
        var (window, error) = MaintenanceWindow.Parse(text);
        Assert.That(error, Is.Null);
        Assert.That(window!.ToString(), Is.EqualTo(written));
        Assert.That(MaintenanceWindow.Parse(written).Window!.ToString(), Is.EqualTo(written), "what is written back reads as the same window");
    }

    [TestCase(null)]
    [TestCase("")]
    [TestCase("   ")]
    [TestCase("01:00")]
    [TestCase("1:00-5:00")]
    [TestCase("01:00-05:00-06:00")]
    [TestCase("24:00-05:00")]
    [TestCase("01:60-05:00")]
    [TestCase("+1:00-05:00")]
    [TestCase("01:00-01:00")]
    [TestCase("mon-fri-sat 01:00-05:00")]
    [TestCase("monday 01:00-05:00")]
    [TestCase("mon,,fri 01:00-05:00")]
    [TestCase("mon 01:00-05:00 extra")]
    [TestCase("mon\n01:00-05:00")]
    [TestCase("mon\t01:00-05:00")]
    [TestCase("mon 01:00-05:00\u0000")]
    [TestCase("mon 01\uff1a00-05:00")]
    [TestCase("mon 01:00-05:00; rm -rf /")]
    [TestCase("mon,tue,wed,thu,fri,sat,sun,mon,tue,wed,thu,fri,sat,sun,mon 01:00-05:00")]
    public void Anything_else_is_refused_with_the_grammar(string? text)
    {
        var (window, error) = MaintenanceWindow.Parse(text);
        Assert.That(window, Is.Null);
        Assert.That(error, Does.StartWith("window: HH:MM-HH:MM"));
    }

    private static readonly TimeSpan Tokyo = TimeSpan.FromHours(9);

    // 2026-04-01 is a Wednesday
    [TestCase("mon-fri 01:00-05:00", "2026-04-01T01:00", true)]
    [TestCase("mon-fri 01:00-05:00", "2026-04-01T04:59", true)]
    [TestCase("mon-fri 01:00-05:00", "2026-04-01T05:00", false)]
    [TestCase("mon-fri 01:00-05:00", "2026-04-01T00:59", false)]
    [TestCase("mon-fri 01:00-05:00", "2026-04-04T02:00", false)] // Saturday
    [TestCase("fri 22:00-02:00", "2026-04-03T23:00", true)] // Friday night
    [TestCase("fri 22:00-02:00", "2026-04-04T01:59", true)] // into Saturday
    [TestCase("fri 22:00-02:00", "2026-04-04T22:30", false)] // Saturday night is not Friday's
    [TestCase("fri 22:00-02:00", "2026-04-03T01:00", false)] // Friday early morning belongs to Thursday
    [TestCase("sat,sun 22:00-06:00", "2026-04-06T05:00", true)] // Monday morning, from Sunday night
    public void A_window_is_open_on_the_days_and_hours_it_names(string text, string local, bool open)
    {
        var at = new DateTimeOffset(DateTime.Parse(local, System.Globalization.CultureInfo.InvariantCulture), Tokyo);
        Assert.That(MaintenanceWindow.Parse(text).Window!.IsOpen(at), Is.EqualTo(open));
    }

    [Test]
    public void Across_a_clock_change_the_window_is_read_on_the_wall_clock()
    {
        // Europe/Berlin springs forward on 2026-03-29 at 02:00 (to 03:00) and falls back on 2026-10-25 at 03:00 (to 02:00)
        Assert.That(Tsunagu.Protocol.ImportancePolicy.TryZone("Europe/Berlin", out var berlin), Is.True);
        var window = MaintenanceWindow.Parse("sun 01:30-03:30").Window!;
        int OpenMinutes(DateTimeOffset fromUtc) => Enumerable.Range(0, 24 * 60)
            .Count(m => window.IsOpen(TimeZoneInfo.ConvertTime(fromUtc.AddMinutes(m), berlin)));
        Assert.That(OpenMinutes(new DateTimeOffset(2026, 3, 28, 23, 0, 0, TimeSpan.Zero)), Is.EqualTo(60), "01:30-02:00 and 03:00-03:30: an hour");
        Assert.That(OpenMinutes(new DateTimeOffset(2026, 10, 24, 22, 0, 0, TimeSpan.Zero)), Is.EqualTo(180), "02:00-03:00 twice: three hours");
        Assert.That(OpenMinutes(new DateTimeOffset(2026, 4, 4, 22, 0, 0, TimeSpan.Zero)), Is.EqualTo(120), "an ordinary Sunday: two hours");
    }

    [Test]
    public void Any_window_written_back_reads_as_the_same_window_and_is_open_exactly_its_minutes()
    {
        Gen.Select(Gen.Int[1, 127], Gen.Int[0, 24 * 60 - 1], Gen.Int[0, 24 * 60 - 1]).Where(t => t.Item2 != t.Item3).Sample(t =>
        {
            var (mask, start, end) = t;
            var days = Enumerable.Range(0, 7).Where(d => (mask & (1 << d)) != 0).Select(d => (DayOfWeek)d).ToHashSet();
            var window = new MaintenanceWindow(days, TimeSpan.FromMinutes(start), TimeSpan.FromMinutes(end));
            var again = MaintenanceWindow.Parse(window.ToString()).Window!;
            Assert.That(again.ToString(), Is.EqualTo(window.ToString()));
            // over a week, open for (length of the window) per day it names
            var length = ((end - start) + 24 * 60) % (24 * 60);
            var week = new DateTimeOffset(2026, 4, 5, 0, 0, 0, TimeSpan.Zero); // a Sunday
            Assert.That(Enumerable.Range(0, 7 * 24 * 60).Count(m => again.IsOpen(week.AddMinutes(m))), Is.EqualTo(length * days.Count));
        }, iter: 30);
    }
}
