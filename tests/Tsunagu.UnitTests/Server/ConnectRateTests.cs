using System.Net;
using Microsoft.Extensions.Time.Testing;
using Tsunagu.Server.Push;

namespace Tsunagu.UnitTests.Server;

/// <summary>New broker connections per source address (server/Tsunagu.Server/Push/ConnectRate.cs), with fake time.</summary>
public class ConnectRateTests
{
    private readonly FakeTimeProvider _time = new(new DateTimeOffset(2026, 4, 1, 9, 0, 0, TimeSpan.Zero));

    private static int Take(ConnectRate rate, IPAddress source, int attempts) => Enumerable.Range(0, attempts).Count(_ => rate.TryTake(source));

    [Test]
    public void A_source_gets_its_burst_then_one_connection_per_refill_and_refusals_do_not_delay_it()
    {
        var rate = new ConnectRate(perSecond: 2, burst: 3, _time);
        var source = IPAddress.Parse("192.0.2.1");

        Assert.That(Take(rate, source, 10), Is.EqualTo(3));
        _time.Advance(TimeSpan.FromMilliseconds(499));
        Assert.That(rate.TryTake(source), Is.False);
        _time.Advance(TimeSpan.FromMilliseconds(1));
        Assert.That(Take(rate, source, 10), Is.EqualTo(1), "half a second at two a second: one, however many were refused");
        _time.Advance(TimeSpan.FromMinutes(5));
        Assert.That(Take(rate, source, 10), Is.EqualTo(3), "a bucket never holds more than the burst");
    }

    [Test]
    public void Sources_have_their_own_buckets_and_an_ipv6_source_counts_as_its_64()
    {
        var rate = new ConnectRate(perSecond: 1, burst: 2, _time);

        Assert.That(Take(rate, IPAddress.Parse("192.0.2.1"), 5), Is.EqualTo(2));
        Assert.That(Take(rate, IPAddress.Parse("192.0.2.2"), 5), Is.EqualTo(2));
        Assert.That(Take(rate, IPAddress.Parse("2001:db8:1:1::1"), 1) + Take(rate, IPAddress.Parse("2001:db8:1:1:ffff::2"), 5), Is.EqualTo(2),
            "two addresses of one /64 share a bucket");
        Assert.That(Take(rate, IPAddress.Parse("2001:db8:1:2::1"), 5), Is.EqualTo(2), "the next /64 has its own");
        Assert.That(rate.Sources, Is.EqualTo(4));
    }

    [Test]
    public void Full_buckets_are_pruned_so_the_table_does_not_keep_sources_that_went_quiet()
    {
        var rate = new ConnectRate(perSecond: 1, burst: 2, _time);
        for (var i = 1; i <= 50; i++) { rate.TryTake(IPAddress.Parse($"198.51.100.{i}")); }
        Assert.That(rate.Sources, Is.EqualTo(50));

        _time.Advance(TimeSpan.FromSeconds(11));
        Assert.That(rate.TryTake(IPAddress.Parse("203.0.113.1")), Is.True);
        Assert.That(rate.Sources, Is.EqualTo(1), "only the new source is left");
    }

    [Test]
    public void An_infinite_rate_refuses_nothing_and_keeps_no_table()
    {
        var rate = new ConnectRate(double.PositiveInfinity, burst: 1, _time);
        Assert.That(Take(rate, IPAddress.Parse("192.0.2.1"), 100), Is.EqualTo(100));
        Assert.That(rate.Sources, Is.Zero);
    }
}
