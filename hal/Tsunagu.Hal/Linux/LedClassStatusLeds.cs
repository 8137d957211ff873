using System.IO.Enumeration;

namespace Tsunagu.Hal.Linux;

/// <summary>Where <see cref="LedClassStatusLeds"/> finds its LEDs, and how it blinks them.</summary>
public sealed record LedClassOptions
{
    /// <summary>The Linux LED class directory.</summary>
    public string LedsRoot { get; init; } = "/sys/class/leds";

    /// <summary>Time lit, then time dark, of a blink (hardware timer trigger and software blink alike).</summary>
    public TimeSpan BlinkHalfPeriod { get; init; } = TimeSpan.FromMilliseconds(500);

    /// <summary>Where problems go (an LED that cannot be found or written); each is reported once.</summary>
    public Action<string>? Log { get; init; }
}

/// <summary>
/// Status LEDs of a board (<see cref="BoardDescription.Leds"/>, <see cref="BoardDescription.Indications"/>): Linux LED
/// class devices (gpio-leds, or the keyboard LEDs of the QEMU board) and raw GPIO lines. An indication sets every
/// LED: those its pattern does not mention go off. "on" writes `max_brightness` to `brightness`, "off" writes 0;
/// "blink" selects the kernel's `timer` trigger when the LED offers it, otherwise the LED is blinked in software
/// (GPIO LEDs always are). A class LED pattern may match several entries (e.g. two keyboards): all are driven.
/// An LED that cannot be found or written is logged once and skipped; <see cref="Show"/> never throws.
/// </summary>
public sealed class LedClassStatusLeds : IStatusLeds, IDisposable
{
    private readonly BoardDescription _board;
    private readonly IGpioLines? _gpio;
    private readonly LedClassOptions _options;
    private readonly TimeProvider _time;
    private readonly Lock _gate = new();
    private readonly HashSet<string> _logged = new(StringComparer.Ordinal);
    private readonly Dictionary<string, List<ClassLed>> _resolved = new(StringComparer.Ordinal);
    private CancellationTokenSource? _blinking;

    /// <param name="board">The LEDs and the indication patterns.</param>
    /// <param name="gpio">Raw GPIO lines for LEDs declared with `gpio`; null when the board has none (they are then logged as missing).</param>
    public LedClassStatusLeds(BoardDescription board, IGpioLines? gpio = null, LedClassOptions? options = null, TimeProvider? time = null)
    {
        _board = board;
        _gpio = gpio;
        _options = options ?? new LedClassOptions();
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
            var software = new List<Action<bool>>();
            foreach (var led in _board.Leds)
            {
                var state = pattern.TryGetValue(led.Name, out var s) ? s : LedState.Off;
                if (led.Gpio is { } line)
                {
                    if (_gpio is null)
                    {
                        LogOnce($"gpio:{led.Name}", $"status LEDs: LED '{led.Name}' is a GPIO line but no GPIO access was given; it is skipped");
                        continue;
                    }
                    var gpio = _gpio;
                    void SetGpio(bool lit) => Guard(led.Name, $"/dev/gpiochip{line.Chip} line {line.Line}", () => gpio.SetActive(line, lit));
                    SetGpio(state == LedState.On);
                    if (state == LedState.Blink) { software.Add(SetGpio); }
                    continue;
                }
                foreach (var device in Resolve(led))
                {
                    if (state == LedState.Blink && device.HasTimerTrigger)
                    {
                        Guard(led.Name, device.Path, () => device.StartTimer(_options.BlinkHalfPeriod));
                        continue;
                    }
                    Guard(led.Name, device.Path, () => device.Set(state == LedState.On));
                    if (state == LedState.Blink)
                    {
                        var d = device;
                        software.Add(lit => Guard(led.Name, d.Path, () => d.SetBrightness(lit)));
                    }
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
    private async Task BlinkAsync(List<Action<bool>> leds, CancellationToken cancellationToken)
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
                    foreach (var set in leds) { set(lit); }
                }
            }
        }
        catch (OperationCanceledException)
        {
            // the next indication took over
        }
    }

    private List<ClassLed> Resolve(BoardLed led)
    {
        if (_resolved.TryGetValue(led.Name, out var found)) { return found; }
        var matches = new List<ClassLed>();
        try
        {
            if (Directory.Exists(_options.LedsRoot))
            {
                foreach (var entry in Directory.EnumerateFileSystemEntries(_options.LedsRoot).Order(StringComparer.Ordinal))
                {
                    if (FileSystemName.MatchesSimpleExpression(led.Class!, Path.GetFileName(entry), ignoreCase: false))
                    {
                        matches.Add(ClassLed.Open(entry));
                    }
                }
            }
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            LogOnce($"resolve:{led.Name}", $"status LEDs: {_options.LedsRoot}: cannot look up LED '{led.Name}' ({led.Class}): {e.Message}");
            return [];
        }
        if (matches.Count == 0)
        {
            // not cached: the driver may register the LED later
            LogOnce($"missing:{led.Name}", $"status LEDs: no LED matching '{led.Class}' in {_options.LedsRoot}; LED '{led.Name}' is skipped");
            return matches;
        }
        _resolved[led.Name] = matches;
        return matches;
    }

    private void Guard(string led, string where, Action action)
    {
        try
        {
            action();
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or HalException)
        {
            var detail = e.Message.StartsWith(where, StringComparison.Ordinal) ? e.Message : $"{where}: {e.Message}";
            LogOnce($"write:{led}:{where}", $"status LEDs: cannot set LED '{led}': {detail}");
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

    /// <summary>One /sys/class/leds entry: its brightness range and whether its triggers include `timer`.</summary>
    private sealed class ClassLed(string path, int maxBrightness, bool hasTrigger, bool hasTimerTrigger)
    {
        public string Path { get; } = path;
        public bool HasTimerTrigger { get; } = hasTimerTrigger;
        // unknown at first: the kernel may have set a default trigger (kbd-numlock...), which is cleared once
        private readonly bool _hasTrigger = hasTrigger;
        private bool _triggerSet = hasTrigger;

        public static ClassLed Open(string path)
        {
            var max = 1;
            var maxFile = System.IO.Path.Combine(path, "max_brightness");
            if (File.Exists(maxFile) && int.TryParse(File.ReadAllText(maxFile).Trim(), out var m) && m > 0) { max = m; }
            var triggerFile = System.IO.Path.Combine(path, "trigger");
            var hasTrigger = File.Exists(triggerFile);
            // the trigger file lists the available triggers, the active one in brackets: "none [timer] heartbeat"
            var timer = hasTrigger && File.ReadAllText(triggerFile).Split((char[]?)null, StringSplitOptions.RemoveEmptyEntries)
                .Any(t => t.Trim('[', ']') == "timer");
            return new ClassLed(path, max, hasTrigger, timer);
        }

        public void Set(bool lit)
        {
            if (_hasTrigger && _triggerSet)
            {
                Write("trigger", "none");
                _triggerSet = false;
            }
            SetBrightness(lit);
        }

        public void SetBrightness(bool lit) => Write("brightness", lit ? maxBrightness.ToString(System.Globalization.CultureInfo.InvariantCulture) : "0");

        public void StartTimer(TimeSpan halfPeriod)
        {
            Write("trigger", "timer");
            _triggerSet = true;
            var ms = ((int)halfPeriod.TotalMilliseconds).ToString(System.Globalization.CultureInfo.InvariantCulture);
            // the timer trigger creates delay_on and delay_off once selected
            if (File.Exists(System.IO.Path.Combine(Path, "delay_on"))) { Write("delay_on", ms); }
            if (File.Exists(System.IO.Path.Combine(Path, "delay_off"))) { Write("delay_off", ms); }
        }

        private void Write(string attribute, string value) => File.WriteAllText(System.IO.Path.Combine(Path, attribute), value);
    }
}
