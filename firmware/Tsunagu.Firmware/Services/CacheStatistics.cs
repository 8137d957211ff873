using System.Globalization;
using Tsunagu.Protocol;

namespace Tsunagu.Firmware.Services;

/// <summary>squid's cache manager answered something that is not its counters page.</summary>
public sealed class CacheStatisticsException(string message, Exception? inner = null) : Exception(message, inner);

/// <summary>
/// The cache's statistics from squid's cache manager (`/squid-internal-mgr/counters` on the proxy port, answered to
/// the unit itself only): requests and hits from the LAN, kilobytes sent to the LAN and those sent from the cache.
/// The counters start at zero when squid starts.
/// </summary>
public static class CacheStatistics
{
    public const string CountersPath = "/squid-internal-mgr/counters";

    /// <summary>Reads the counters page (`name = value` lines).</summary>
    /// <exception cref="CacheStatisticsException">A counter is missing, not a whole number, negative or out of bounds.</exception>
    public static UnitCacheReport Parse(string counters)
    {
        var values = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (var raw in counters.Split('\n'))
        {
            var line = raw.TrimEnd('\r');
            var eq = line.IndexOf(" = ", StringComparison.Ordinal);
            if (eq > 0) { values[line[..eq].Trim()] = line[(eq + 3)..].Trim(); }
        }
        long Counter(string name, long max)
        {
            if (!values.TryGetValue(name, out var text))
            {
                throw new CacheStatisticsException($"squid counters: {name} is missing");
            }
            if (!long.TryParse(text, NumberStyles.None, CultureInfo.InvariantCulture, out var value) || value > max)
            {
                throw new CacheStatisticsException($"squid counters: {name} = '{text}' is not a whole number in 0..{max}");
            }
            return value;
        }
        const long maxKilobytes = UnitCacheReport.MaxBytes / 1024;
        var report = new UnitCacheReport(
            Counter("client_http.requests", UnitCacheReport.MaxRequests),
            Counter("client_http.hits", UnitCacheReport.MaxRequests),
            Counter("client_http.kbytes_out", maxKilobytes) * 1024,
            Counter("client_http.hit_kbytes_out", maxKilobytes) * 1024);
        return report.Problem() is { } problem ? throw new CacheStatisticsException($"squid counters: {problem}") : report;
    }

    /// <summary>Asks squid at <paramref name="address"/>:<paramref name="port"/> for its counters.</summary>
    /// <exception cref="CacheStatisticsException">squid did not answer, refused, or answered something else.</exception>
    public static async Task<UnitCacheReport> ReadAsync(HttpClient http, string address, int port, CancellationToken ct)
    {
        var uri = new Uri($"http://{address}:{port.ToString(CultureInfo.InvariantCulture)}{CountersPath}");
        try
        {
            using var response = await http.GetAsync(uri, ct);
            if (!response.IsSuccessStatusCode)
            {
                throw new CacheStatisticsException($"squid's cache manager at {uri} answered {(int)response.StatusCode}");
            }
            return Parse(await response.Content.ReadAsStringAsync(ct));
        }
        catch (HttpRequestException e)
        {
            throw new CacheStatisticsException($"squid's cache manager at {uri} is unreachable: {e.Message}", e);
        }
        catch (TaskCanceledException e) when (!ct.IsCancellationRequested)
        {
            throw new CacheStatisticsException($"squid's cache manager at {uri} did not answer in time", e);
        }
    }
}
