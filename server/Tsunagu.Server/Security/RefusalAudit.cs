using System.Globalization;
using Tsunagu.Server.Data;

namespace Tsunagu.Server.Security;

/// <summary>
/// Refused unit authentications, aggregated for the audit log: the first refusal of a unit (MAC) from one source
/// address in a period is written at once; the rest of that period are counted and written as one summary entry when
/// the period ends (at the next refusal after it, or at the periodic flush). Unregistered MACs are counted together per
/// source, so a flood of invented MACs writes one entry per source and period, not one per attempt.
/// </summary>
public sealed class RefusalAudit : IAsyncDisposable
{
    public const string Action = "unit.refused";
    public const string UnregisteredKey = "unregistered";

    /// <summary>Distinct (MAC, source) pairs counted at once; past it every pair is summarised and counting starts again.</summary>
    private const int MaxPairs = 10_000;

    private readonly TsunaguStore _store;
    private readonly TimeProvider _time;
    private readonly TimeSpan _period;
    private readonly Lock _lock = new();
    private readonly Dictionary<(string Mac, string Source), Entry> _entries = [];
    private readonly ITimer _flush;

    private sealed class Entry(DateTimeOffset start, string reason)
    {
        public DateTimeOffset Start { get; } = start;
        public string Reason { get; } = reason;
        public int Count { get; set; } = 1;
    }

    public RefusalAudit(TsunaguStore store, TimeProvider time, ServerOptions options)
    {
        _store = store;
        _time = time;
        _period = options.RefusalAuditPeriod;
        _flush = time.CreateTimer(async _ => await FlushAsync(all: false), null, _period, _period);
    }

    /// <summary>Records one refusal of <paramref name="mac"/> (null: not registered) from <paramref name="source"/>.</summary>
    public async Task RecordAsync(string? mac, string source, string reason, CancellationToken ct = default)
    {
        var now = _time.GetUtcNow();
        var key = (mac ?? UnregisteredKey, source);
        List<(string, string, Entry)> summaries = [];
        var first = false;
        lock (_lock)
        {
            if (_entries.TryGetValue(key, out var entry) && entry.Start + _period > now)
            {
                entry.Count++;
            }
            else
            {
                if (entry is not null) { summaries.Add((key.Item1, key.source, entry)); }
                if (_entries.Count >= MaxPairs)
                {
                    summaries.AddRange(_entries.Select(e => (e.Key.Mac, e.Key.Source, e.Value)));
                    _entries.Clear();
                }
                _entries[key] = new Entry(now, reason);
                first = true;
            }
        }
        await WriteAsync(summaries, now, ct);
        if (first)
        {
            await _store.AuditAsync("system", Action, key.Item1,
                $"{reason} from {source}; further ones from this address are counted for {_period.TotalMinutes:0} min and recorded once", ct);
        }
    }

    /// <summary>Writes the summaries of periods that ended (all counted ones when <paramref name="all"/>).</summary>
    public async Task FlushAsync(bool all, CancellationToken ct = default)
    {
        var now = _time.GetUtcNow();
        List<(string, string, Entry)> summaries;
        lock (_lock)
        {
            summaries = _entries.Where(e => all || e.Value.Start + _period <= now).Select(e => (e.Key.Mac, e.Key.Source, e.Value)).ToList();
            foreach (var (mac, source, _) in summaries) { _entries.Remove((mac, source)); }
        }
        await WriteAsync(summaries, now, ct);
    }

    private async Task WriteAsync(List<(string Mac, string Source, Entry Entry)> summaries, DateTimeOffset now, CancellationToken ct)
    {
        foreach (var (mac, source, entry) in summaries.Where(s => s.Entry.Count > 1))
        {
            await _store.AuditAsync("system", Action, mac, string.Create(CultureInfo.InvariantCulture,
                $"{entry.Reason} from {source}: {entry.Count} refusals from {TsunaguStore.Timestamp(entry.Start)} to {TsunaguStore.Timestamp(now)}"), ct);
        }
    }

    public async ValueTask DisposeAsync()
    {
        await _flush.DisposeAsync();
        await FlushAsync(all: true);
    }
}
