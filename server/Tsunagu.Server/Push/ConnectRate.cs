using System.Net;
using System.Net.Sockets;

namespace Tsunagu.Server.Push;

/// <summary>
/// New connections per source address: a token bucket of <paramref name="burst"/> tokens refilled at
/// <paramref name="perSecond"/> each; a connection takes one or is refused. An IPv6 source counts as its /64 (one
/// host holds a whole one). The table is pruned of full buckets, and holds at most <see cref="MaxSources"/>: past that,
/// new sources share one bucket, so a flood of addresses cannot grow memory without bound.
/// </summary>
public sealed class ConnectRate(double perSecond, int burst, TimeProvider time)
{
    public const int MaxSources = 100_000;
    private static readonly IPAddress Overflow = IPAddress.IPv6None;
    private readonly Lock _lock = new();
    private readonly Dictionary<IPAddress, (double Tokens, long At)> _buckets = new();
    private long _prunedAt = time.GetTimestamp();

    public int Sources { get { lock (_lock) { return _buckets.Count; } } }

    /// <summary>True when <paramref name="source"/> may open a connection now (and one token is taken).</summary>
    public bool TryTake(IPAddress source)
    {
        if (double.IsPositiveInfinity(perSecond)) { return true; }
        var key = KeyOf(source);
        var now = time.GetTimestamp();
        lock (_lock)
        {
            if (time.GetElapsedTime(_prunedAt, now) >= TimeSpan.FromSeconds(10) || _buckets.Count >= MaxSources)
            {
                Prune(now);
            }
            if (!_buckets.ContainsKey(key) && _buckets.Count >= MaxSources)
            {
                key = Overflow;
            }
            var tokens = _buckets.TryGetValue(key, out var bucket) ? Refill(bucket, now) : burst;
            if (tokens < 1)
            {
                _buckets[key] = (tokens, now);
                return false;
            }
            _buckets[key] = (tokens - 1, now);
            return true;
        }
    }

    private double Refill((double Tokens, long At) bucket, long now) =>
        Math.Min(burst, bucket.Tokens + time.GetElapsedTime(bucket.At, now).TotalSeconds * perSecond);

    private void Prune(long now)
    {
        _prunedAt = now;
        foreach (var (key, bucket) in _buckets)
        {
            if (Refill(bucket, now) >= burst) { _buckets.Remove(key); }
        }
    }

    private static IPAddress KeyOf(IPAddress source)
    {
        if (source.AddressFamily != AddressFamily.InterNetworkV6) { return source; }
        var bytes = source.GetAddressBytes();
        Array.Clear(bytes, 8, 8);
        return new IPAddress(bytes);
    }
}
