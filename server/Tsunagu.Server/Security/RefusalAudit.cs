using System.Globalization;
using Tsunagu.Server.Data;

namespace Tsunagu.Server.Security;

/// <summary>
/// Refused unit authentications, aggregated for the audit log: the first refusal of a unit (MAC) from one source
/// address in a period is written at once; the rest of that period are counted and written as one summary entry when
/// the period ends (at the next refusal after it, or at the periodic flush). Unregistered MACs are counted together per
/// source, so a flood of invented MACs writes one entry per source and period, not one per attempt.
/// </summary>
public sealed class RefusalAudit : IDisposable
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
        _flush = time.CreateTimer(_ => Flush(all: false), null, _period, _period);
    }

    /// <summary>Records one refusal of <paramref name="mac"/> (null: not registered) from <paramref name="source"/>.</summary>
    public void Record(string? mac, string source, string reason)
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
        Write(summaries, now);
        if (first)
        {
            _store.Audit("system", Action, key.Item1,
                $"{reason} from {source}; further ones from this address are counted for {_period.TotalMinutes:0} min and recorded once");
        }
    }

    /// <summary>Writes the summaries of periods that ended (all counted ones when <paramref name="all"/>).</summary>
    public void Flush(bool all)
    {
        var now = _time.GetUtcNow();
        List<(string, string, Entry)> summaries;
        lock (_lock)
        {
            summaries = _entries.Where(e => all || e.Value.Start + _period <= now).Select(e => (e.Key.Mac, e.Key.Source, e.Value)).ToList();
            foreach (var (mac, source, _) in summaries) { _entries.Remove((mac, source)); }
        }
        Write(summaries, now);
    }

    private void Write(List<(string Mac, string Source, Entry Entry)> summaries, DateTimeOffset now)
    {
        foreach (var (mac, source, entry) in summaries.Where(s => s.Entry.Count > 1))
        {
            _store.Audit("system", Action, mac, string.Create(CultureInfo.InvariantCulture,
                $"{entry.Reason} from {source}: {entry.Count} refusals from {TsunaguStore.Timestamp(entry.Start)} to {TsunaguStore.Timestamp(now)}"));
        }
    }

    public void Dispose()
    {
        _flush.Dispose();
        Flush(all: true);
    }
}
