using System.Globalization;
using Tsunagu.Protocol;

namespace Tsunagu.Hal.Linux;

/// <summary>Where <see cref="LinuxSystemLoad"/> reads its counters.</summary>
public sealed record LinuxLoadOptions
{
    /// <summary>The WAN interface whose traffic is measured (the board's `interfaces.wan`).</summary>
    public required string WanInterface { get; init; }

    /// <summary>The proc file system: `stat` and `net/dev` under it.</summary>
    public string ProcRoot { get; init; } = "/proc";

    /// <summary>The network class directory: `IF/speed` (Mb/s) gives the link's capacity when known.</summary>
    public string NetClassRoot { get; init; } = "/sys/class/net";

    /// <summary>The WAN capacity in Mb/s; null: the interface's `speed`, or <see cref="FallbackWanMbps"/> when it has none (virtio reports -1).</summary>
    public double? WanMbps { get; init; }

    public double FallbackWanMbps { get; init; } = 100;

    /// <summary>The shortest window a reading averages over: a reading sooner than this after the last keeps the older starting sample.</summary>
    public TimeSpan MinimumWindow { get; init; } = TimeSpan.FromSeconds(1);

    /// <summary>How far back a reading looks: the load "now" is the average over about this much recent time.</summary>
    public TimeSpan Window { get; init; } = TimeSpan.FromMinutes(1);

    /// <summary>How often the counters are sampled in the background, so that a reading always has a start inside <see cref="Window"/>.</summary>
    public TimeSpan SampleInterval { get; init; } = TimeSpan.FromSeconds(10);

    public void Validate()
    {
        if (MinimumWindow <= TimeSpan.Zero || SampleInterval <= TimeSpan.Zero || Window < SampleInterval || Window < MinimumWindow)
        {
            throw new ArgumentException($"load sampling needs 0 < MinimumWindow <= Window and 0 < SampleInterval <= Window (was {MinimumWindow}, {SampleInterval}, {Window})");
        }
    }
}

/// <summary>
/// CPU and WAN utilisation (0..1) from two samples of the kernel's counters: /proc/stat's `cpu` line (busy = all
/// but idle and iowait) and the WAN interface's byte counters in /proc/net/dev (the busier direction against the
/// link's capacity). A background timer samples the counters every <see cref="LinuxLoadOptions.SampleInterval"/>; a
/// <see cref="Read"/> averages from the oldest sample inside the last <see cref="LinuxLoadOptions.Window"/> to now, so it
/// is the load of the last minute whenever it is read (a daily check included), never an average since the previous
/// reading.
/// </summary>
public sealed class LinuxSystemLoad : ISystemLoad, IDisposable
{
    private readonly LinuxLoadOptions _options;
    private readonly TimeProvider _time;
    private readonly Lock _gate = new();
    private readonly LinkedList<Sample> _samples = new();
    private readonly ITimer _sampler;

    public LinuxSystemLoad(LinuxLoadOptions options, TimeProvider? time = null)
    {
        options.Validate();
        _options = options;
        _time = time ?? TimeProvider.System;
        _samples.AddLast(Take());
        _sampler = _time.CreateTimer(_ => SampleInBackground(), null, options.SampleInterval, options.SampleInterval);
    }

    /// <summary>Samples kept now (the window's worth plus one older), for tests.</summary>
    public int SampleCount { get { lock (_gate) { return _samples.Count; } } }

    private void SampleInBackground()
    {
        try
        {
            var sample = Take();
            lock (_gate) { Keep(sample); }
        }
        catch (HalException)
        {
            // unreadable counters now: the next tick or the reading itself tries again (and the reading reports it)
        }
    }

    /// <summary>Adds a sample (unless the newest is younger than the minimum window) and drops those no reading needs any more.</summary>
    private void Keep(Sample sample)
    {
        if (_samples.Last is { } last && sample.At - last.Value.At < _options.MinimumWindow) { return; }
        _samples.AddLast(sample);
        // keep the newest sample at least a window old as the fallback start; drop everything older
        while (_samples.First?.Next is { } second && sample.At - second.Value.At >= _options.Window)
        {
            _samples.RemoveFirst();
        }
    }

    /// <summary>The oldest sample no older than the window (at least the minimum window old when there is one), else the newest older one.</summary>
    private Sample StartFor(Sample now)
    {
        Sample? start = null;
        foreach (var s in _samples)
        {
            var age = now.At - s.At;
            if (age > _options.Window) { start = s; continue; }
            if (age >= _options.MinimumWindow || start is null) { start = s; }
            break;
        }
        return start ?? _samples.First!.Value;
    }

    public void Dispose() => _sampler.Dispose();

    public UnitLoad Read()
    {
        lock (_gate)
        {
            var now = Take();
            var start = StartFor(now);
            var cpu = now.CpuTotal > start.CpuTotal ? (double)(now.CpuBusy - start.CpuBusy) / (now.CpuTotal - start.CpuTotal) : 0;
            var seconds = (now.At - start.At).TotalSeconds;
            double wan = 0;
            if (seconds > 0 && now.HasWan && start.HasWan)
            {
                var bytes = Math.Max(now.RxBytes - start.RxBytes, now.TxBytes - start.TxBytes);
                wan = bytes * 8 / seconds / (WanMbps() * 1_000_000);
            }
            Keep(now);
            return new UnitLoad(Clamp(cpu), Clamp(wan));
        }
    }

    private static double Clamp(double v) => double.IsFinite(v) ? Math.Clamp(v, 0, 1) : 0;

    private double WanMbps()
    {
        if (_options.WanMbps is > 0 and var configured) { return configured; }
        var file = Path.Combine(_options.NetClassRoot, _options.WanInterface, "speed");
        try
        {
            if (File.Exists(file) && double.TryParse(File.ReadAllText(file).Trim(), NumberStyles.Float, CultureInfo.InvariantCulture, out var speed) && speed > 0)
            {
                return speed;
            }
        }
        catch (IOException)
        {
            // reading speed of a link that is down fails with EINVAL
        }
        return _options.FallbackWanMbps;
    }

    private Sample Take()
    {
        var at = _time.GetUtcNow();
        var (busy, total) = ReadCpu(Path.Combine(_options.ProcRoot, "stat"));
        var (hasWan, rx, tx) = ReadInterface(Path.Combine(_options.ProcRoot, "net", "dev"), _options.WanInterface);
        return new Sample(at, busy, total, hasWan, rx, tx);
    }

    /// <summary>Busy and total jiffies of the `cpu` line (user nice system idle iowait irq softirq steal; guest time is inside user).</summary>
    public static (long Busy, long Total) ReadCpu(string statPath)
    {
        try
        {
            foreach (var line in File.ReadLines(statPath))
            {
                if (!line.StartsWith("cpu ", StringComparison.Ordinal)) { continue; }
                var fields = line.Split(' ', StringSplitOptions.RemoveEmptyEntries).Skip(1).Take(8)
                    .Select(f => long.TryParse(f, NumberStyles.None, CultureInfo.InvariantCulture, out var n) ? n : 0).ToArray();
                var total = fields.Sum();
                var idle = fields.ElementAtOrDefault(3) + fields.ElementAtOrDefault(4);
                return (total - idle, total);
            }
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new HalException($"{statPath}: CPU counters unreadable: {e.Message}", isTransient: false, e);
        }
        throw new HalException($"{statPath}: no 'cpu' line", isTransient: false);
    }

    /// <summary>Received and transmitted bytes of <paramref name="iface"/> in /proc/net/dev; found false when it is not listed.</summary>
    public static (bool Found, long RxBytes, long TxBytes) ReadInterface(string netDevPath, string iface)
    {
        try
        {
            foreach (var line in File.ReadLines(netDevPath))
            {
                var colon = line.IndexOf(':');
                if (colon < 0 || line.AsSpan(0, colon).Trim().ToString() != iface) { continue; }
                var fields = line[(colon + 1)..].Split(' ', StringSplitOptions.RemoveEmptyEntries);
                if (fields.Length < 9) { break; }
                return (true, long.Parse(fields[0], CultureInfo.InvariantCulture), long.Parse(fields[8], CultureInfo.InvariantCulture));
            }
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or FormatException or OverflowException)
        {
            throw new HalException($"{netDevPath}: interface counters unreadable: {e.Message}", isTransient: false, e);
        }
        return (false, 0, 0);
    }

    private readonly record struct Sample(DateTimeOffset At, long CpuBusy, long CpuTotal, bool HasWan, long RxBytes, long TxBytes);
}
