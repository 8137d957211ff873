namespace Tsunagu.Hal;

/// <summary>One physical LED as its adapter drives it: steady on or off, or blinking by itself when it can.</summary>
public interface ILedOutput
{
    /// <summary>The device, for messages (a sysfs path, a GPIO line).</summary>
    string Device { get; }

    /// <summary>Steady: lit or dark (a blink the LED was doing by itself stops).</summary>
    /// <exception cref="IOException">The device cannot be written.</exception>
    /// <exception cref="HalException">The device cannot be written.</exception>
    void Set(bool lit);

    /// <summary>Starts blinking by itself (a hardware timer); false when it cannot, and it is then blinked with <see cref="Set"/>.</summary>
    /// <exception cref="IOException">The device cannot be written.</exception>
    bool TryBlink(TimeSpan halfPeriod);
}

/// <summary>Finds the LEDs a board declares (the mechanism below <see cref="StatusLeds"/>).</summary>
public interface ILedOutputs
{
    /// <summary>The outputs of <paramref name="led"/> (a pattern may match several devices).</summary>
    /// <exception cref="HalException">No device has it yet, or it cannot be looked up: the message says why.</exception>
    IReadOnlyList<ILedOutput> Find(BoardLed led);
}

/// <summary>How <see cref="StatusLeds"/> blinks and where it reports problems.</summary>
public sealed record StatusLedOptions
{
    /// <summary>Time lit, then time dark, of a blink (hardware timer and software blink alike).</summary>
    public TimeSpan BlinkHalfPeriod { get; init; } = TimeSpan.FromMilliseconds(500);

    /// <summary>Where problems go (an LED that cannot be found or written); each is reported once.</summary>
    public Action<string>? Log { get; init; }
}

/// <summary>
/// The status LEDs' logic, independent of how an LED is driven: an indication sets every LED of the board
/// (<see cref="BoardDescription.Leds"/>, <see cref="BoardDescription.Indications"/>); those its pattern does not
/// mention go off. "blink" lets an LED blink by itself when it can, otherwise it is toggled every half period
/// until the next indication. An LED that cannot be found or written is logged once and skipped; an LED not found is
/// looked for again at the next indication (its driver may register it later). <see cref="Show"/> never throws.
/// </summary>
public sealed class StatusLeds : IStatusLeds, IDisposable
{
    private readonly BoardDescription _board;
    private readonly ILedOutputs _outputs;
    private readonly StatusLedOptions _options;
    private readonly TimeProvider _time;
    private readonly Lock _gate = new();
    private readonly HashSet<string> _logged = new(StringComparer.Ordinal);
    private readonly Dictionary<string, IReadOnlyList<ILedOutput>> _found = new(StringComparer.Ordinal);
    private CancellationTokenSource? _blinking;

    public StatusLeds(BoardDescription board, ILedOutputs outputs, StatusLedOptions? options = null, TimeProvider? time = null)
    {
        _board = board;
        _outputs = outputs;
        _options = options ?? new StatusLedOptions();
        _time = time ?? TimeProvider.System;
    }

    /// <summary>The indication shown last, or null before the first <see cref="Show"/>.</summary>
    public StatusIndication? Current { get; private set; }

    /// <summary>The software blink loop in progress (for tests), or a completed task.</summary>
    public Task Blinking { get; private set; } = Task.CompletedTask;

    public void Show(StatusIndication indication)
    {
        try
        {
            ShowCore(indication);
        }
        catch (Exception e)
        {
            LogOnce($"show:{e.GetType().Name}", $"status LEDs: showing {indication} failed: {e.Message}");
        }
    }

    private void ShowCore(StatusIndication indication)
    {
        lock (_gate)
        {
            Current = indication;
            _blinking?.Cancel();
            _blinking?.Dispose();
            _blinking = null;
            var pattern = _board.Pattern(indication);
            if (pattern is null)
            {
                LogOnce($"pattern:{indication}", $"status LEDs: board '{_board.Name}' defines no pattern for {BoardDescription.IndicationKey(indication)}; the LEDs are left as they are");
                return;
            }
            var software = new List<(string Led, ILedOutput Output)>();
            foreach (var led in _board.Leds)
            {
                var state = pattern.TryGetValue(led.Name, out var s) ? s : LedState.Off;
                foreach (var output in Find(led))
                {
                    if (state == LedState.Blink && Guard(led.Name, output, () => output.TryBlink(_options.BlinkHalfPeriod))) { continue; }
                    Guard(led.Name, output, () => { output.Set(state == LedState.On); return true; });
                    if (state == LedState.Blink) { software.Add((led.Name, output)); }
                }
            }
            if (software.Count > 0)
            {
                _blinking = new CancellationTokenSource();
                Blinking = BlinkAsync(software, _blinking.Token);
            }
            else
            {
                Blinking = Task.CompletedTask;
            }
        }
    }

    /// <summary>Toggles the software-blinked LEDs every half period until the next <see cref="Show"/>.</summary>
    private async Task BlinkAsync(List<(string Led, ILedOutput Output)> leds, CancellationToken cancellationToken)
    {
        var lit = false;
        try
        {
            while (true)
            {
                await Task.Delay(_options.BlinkHalfPeriod, _time, cancellationToken);
                lock (_gate)
                {
                    if (cancellationToken.IsCancellationRequested) { return; }
                    lit = !lit;
                    foreach (var (led, output) in leds) { Guard(led, output, () => { output.Set(lit); return true; }); }
                }
            }
        }
        catch (OperationCanceledException)
        {
            // the next indication took over
        }
    }

    private IReadOnlyList<ILedOutput> Find(BoardLed led)
    {
        if (_found.TryGetValue(led.Name, out var found)) { return found; }
        try
        {
            found = _outputs.Find(led);
        }
        catch (HalException e)
        {
            LogOnce($"find:{led.Name}", $"status LEDs: {e.Message}; LED '{led.Name}' is skipped");
            return [];
        }
        _found[led.Name] = found;
        return found;
    }

    /// <summary>Runs one write to an LED; a failure is logged once and reads as false.</summary>
    private bool Guard(string led, ILedOutput output, Func<bool> action)
    {
        try
        {
            return action();
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or HalException)
        {
            var detail = e.Message.StartsWith(output.Device, StringComparison.Ordinal) ? e.Message : $"{output.Device}: {e.Message}";
            LogOnce($"write:{led}:{output.Device}", $"status LEDs: cannot set LED '{led}': {detail}");
            return false;
        }
    }

    private void LogOnce(string key, string message)
    {
        if (_logged.Add(key)) { _options.Log?.Invoke(message); }
    }

    public void Dispose()
    {
        lock (_gate)
        {
            _blinking?.Cancel();
            _blinking?.Dispose();
            _blinking = null;
        }
    }
}
