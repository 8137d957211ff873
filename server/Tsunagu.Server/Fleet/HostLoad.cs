namespace Tsunagu.Server.Fleet;

/// <summary>The host's own load now, a fraction (0 idle, 1 saturated), for the importance decision (patent 0064).</summary>
public interface IHostLoad
{
    double Current();
}

/// <summary>
/// The server process's CPU use over the last minute, as a fraction of all its cores: sampled every
/// <see cref="Spacing"/> in the background (and when read), averaged from the oldest sample within the last minute, so a
/// reading is the last minute's, not the time since some earlier reading. Before a second sample it reads 0.
/// </summary>
public sealed class ProcessCpuLoad : BackgroundService, IHostLoad
{
    public static readonly TimeSpan Window = TimeSpan.FromMinutes(1);
    public static readonly TimeSpan Spacing = TimeSpan.FromSeconds(5);

    private readonly TimeProvider _time;
    private readonly Func<TimeSpan> _cpuTime;
    private readonly int _processors;
    private readonly Queue<(DateTimeOffset At, TimeSpan Cpu)> _samples = new();
    private readonly Lock _lock = new();

    /// <param name="cpuTime">The CPU time the process has used so far (default: <see cref="System.Diagnostics.Process.TotalProcessorTime"/>).</param>
    /// <param name="processors">The cores it may use (default: <see cref="Environment.ProcessorCount"/>).</param>
    public ProcessCpuLoad(TimeProvider time, Func<TimeSpan>? cpuTime = null, int? processors = null)
    {
        _time = time;
        _cpuTime = cpuTime ?? (() => { using var p = System.Diagnostics.Process.GetCurrentProcess(); return p.TotalProcessorTime; });
        _processors = Math.Max(1, processors ?? Environment.ProcessorCount);
    }

    /// <summary>Takes a sample unless the newest is less than <see cref="Spacing"/> old; drops those older than the window but one.</summary>
    public void Sample()
    {
        var now = _time.GetUtcNow();
        lock (_lock)
        {
            if (_samples.Count > 0 && now - _samples.Last().At < Spacing) { return; }
            _samples.Enqueue((now, _cpuTime()));
            while (_samples.Count > 2 && now - _samples.Peek().At > Window) { _samples.Dequeue(); }
        }
    }

    public double Current()
    {
        Sample();
        var now = _time.GetUtcNow();
        lock (_lock)
        {
            var newest = _samples.Last();
            // the oldest sample within the window, else the one just before it (a pause in sampling)
            var from = _samples.FirstOrDefault(s => now - s.At <= Window && s.At < newest.At);
            if (from.At == default) { from = _samples.Count > 1 ? _samples.Reverse().Skip(1).First() : newest; }
            var wall = newest.At - from.At;
            if (wall <= TimeSpan.Zero) { return 0; }
            return Math.Clamp((newest.Cpu - from.Cpu) / (wall * _processors), 0, 1);
        }
    }

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        while (!stoppingToken.IsCancellationRequested)
        {
            Sample();
            try
            {
                await Task.Delay(Spacing, _time, stoppingToken);
            }
            catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
            {
                return;
            }
        }
    }
}
