using System.Globalization;
using System.IO.Enumeration;

namespace Tsunagu.Hal.Linux;

/// <summary>
/// The LEDs of a Linux board for <see cref="StatusLeds"/>: a board LED declared with `class` is every Linux LED class
/// device (`/sys/class/leds/NAME`) whose name matches the pattern (gpio-leds, or the keyboard LEDs of the QEMU board;
/// e.g. two keyboards match `input*::capslock`); one declared with `gpio` is a raw GPIO line.
/// </summary>
public sealed class LinuxLedOutputs(string ledsRoot = "/sys/class/leds", IGpioLines? gpio = null) : ILedOutputs
{
    /// <exception cref="HalException">No class device matches yet, the class directory cannot be read, or a GPIO LED has no GPIO access.</exception>
    public IReadOnlyList<ILedOutput> Find(BoardLed led)
    {
        if (led.Gpio is { } line)
        {
            return gpio is null
                ? throw new HalException($"LED '{led.Name}' is a GPIO line but no GPIO access was given", isTransient: false)
                : [new GpioLed(gpio, line)];
        }
        var matches = new List<ILedOutput>();
        try
        {
            if (Directory.Exists(ledsRoot))
            {
                foreach (var entry in Directory.EnumerateFileSystemEntries(ledsRoot).Order(StringComparer.Ordinal))
                {
                    if (FileSystemName.MatchesSimpleExpression(led.Class!, Path.GetFileName(entry), ignoreCase: false))
                    {
                        matches.Add(LedClassLed.Open(entry));
                    }
                }
            }
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new HalException($"{ledsRoot}: cannot look up LED '{led.Name}' ({led.Class}): {e.Message}", isTransient: true, e);
        }
        return matches.Count == 0
            ? throw new HalException($"no LED matching '{led.Class}' in {ledsRoot}", isTransient: true)
            : matches;
    }
}

/// <summary>
/// One Linux LED class device: "on" writes `max_brightness` to `brightness`, "off" writes 0, a blink selects the
/// kernel's `timer` trigger (with `delay_on` and `delay_off`) when the LED offers it.
/// </summary>
public sealed class LedClassLed : ILedOutput
{
    private readonly int _maxBrightness;
    private readonly bool _hasTrigger;
    private readonly bool _hasTimerTrigger;
    // unknown at first: the kernel may have set a default trigger (kbd-numlock...), which is cleared once
    private bool _triggerSet;

    private LedClassLed(string path, int maxBrightness, bool hasTrigger, bool hasTimerTrigger)
    {
        Device = path;
        _maxBrightness = maxBrightness;
        _hasTrigger = hasTrigger;
        _hasTimerTrigger = hasTimerTrigger;
        _triggerSet = hasTrigger;
    }

    public string Device { get; }

    /// <exception cref="IOException">The device's attributes cannot be read.</exception>
    public static LedClassLed Open(string path)
    {
        var max = 1;
        var maxFile = Path.Combine(path, "max_brightness");
        if (File.Exists(maxFile) && int.TryParse(File.ReadAllText(maxFile).Trim(), out var m) && m > 0) { max = m; }
        var triggerFile = Path.Combine(path, "trigger");
        var hasTrigger = File.Exists(triggerFile);
        // the trigger file lists the available triggers, the active one in brackets: "none [timer] heartbeat"
        var timer = hasTrigger && File.ReadAllText(triggerFile).Split((char[]?)null, StringSplitOptions.RemoveEmptyEntries)
            .Any(t => t.Trim('[', ']') == "timer");
        return new LedClassLed(path, max, hasTrigger, timer);
    }

    public void Set(bool lit)
    {
        if (_hasTrigger && _triggerSet)
        {
            Write("trigger", "none");
            _triggerSet = false;
        }
        Write("brightness", lit ? _maxBrightness.ToString(CultureInfo.InvariantCulture) : "0");
    }

    public bool TryBlink(TimeSpan halfPeriod)
    {
        if (!_hasTimerTrigger) { return false; }
        Write("trigger", "timer");
        _triggerSet = true;
        var ms = ((int)halfPeriod.TotalMilliseconds).ToString(CultureInfo.InvariantCulture);
        // the timer trigger creates delay_on and delay_off once selected
        if (File.Exists(Path.Combine(Device, "delay_on"))) { Write("delay_on", ms); }
        if (File.Exists(Path.Combine(Device, "delay_off"))) { Write("delay_off", ms); }
        return true;
    }

    private void Write(string attribute, string value) => File.WriteAllText(Path.Combine(Device, attribute), value);
}

/// <summary>An LED on a raw GPIO line (honouring active-low); it cannot blink by itself.</summary>
public sealed class GpioLed(IGpioLines gpio, BoardGpioLine line) : ILedOutput
{
    public string Device { get; } = $"/dev/gpiochip{line.Chip} line {line.Line}";

    public void Set(bool lit) => gpio.SetActive(line, lit);

    public bool TryBlink(TimeSpan halfPeriod) => false;
}
