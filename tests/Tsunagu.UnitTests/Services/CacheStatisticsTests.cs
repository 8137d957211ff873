using Tsunagu.Firmware.Services;
using Tsunagu.Protocol;

namespace Tsunagu.UnitTests.Services;

/// <summary>
/// The unit's reading of squid's cache manager counters: the page real squid 5.7 answered (captured from a run with one
/// miss, one hit and the counters request itself) and damaged forms of it, which are refused rather than reported.
/// </summary>
public class CacheStatisticsTests
{
    private static string Captured => File.ReadAllText(Path.Combine(TestContext.CurrentContext.TestDirectory, "Fixtures", "squid-5.7-counters.txt"));

    [Test]
    public void Real_squid_counters_give_requests_hits_and_bytes()
    {
        var report = CacheStatistics.Parse(Captured);
        Assert.That(report, Is.EqualTo(new UnitCacheReport(3, 1, 3072, 1024)));
        Assert.That(report.Problem(), Is.Null);
    }

    [Test]
    public void Windows_line_ends_read_the_same()
    {
        Assert.That(CacheStatistics.Parse(Captured.Replace("\n", "\r\n")), Is.EqualTo(CacheStatistics.Parse(Captured)));
    }

    [TestCase("client_http.hits = 1", "", "client_http.hits is missing")]
    [TestCase("client_http.requests = 3", "client_http.requests = -2", "client_http.requests")]
    [TestCase("client_http.requests = 3", "client_http.requests = 2.5", "client_http.requests")]
    [TestCase("client_http.requests = 3", "client_http.requests = 99999999999999999999", "client_http.requests")]
    [TestCase("client_http.requests = 3", "client_http.requests = 1000000000001", "client_http.requests")]
    [TestCase("client_http.hits = 1", "client_http.hits = 4", "cache.hits: 4 is more than cache.requests 3")]
    [TestCase("client_http.hit_kbytes_out = 1", "client_http.hit_kbytes_out = 5", "cache.bytesSaved")]
    [TestCase("client_http.kbytes_out = 3", "client_http.kbytes_out = 0x10", "client_http.kbytes_out")]
    public void Damaged_counters_are_refused_naming_the_counter(string line, string replacement, string expected)
    {
        Assert.That(Captured, Does.Contain(line));
        var e = Assert.Throws<CacheStatisticsException>(() => CacheStatistics.Parse(Captured.Replace(line, replacement)));
        Assert.That(e!.Message, Does.Contain(expected));
    }

    [Test]
    public void An_error_page_instead_of_the_counters_is_refused()
    {
        Assert.Throws<CacheStatisticsException>(() => CacheStatistics.Parse("<html><body>Access Denied</body></html>"));
        Assert.Throws<CacheStatisticsException>(() => CacheStatistics.Parse(""));
    }
}
