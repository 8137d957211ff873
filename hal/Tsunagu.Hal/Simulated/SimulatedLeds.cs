namespace Tsunagu.Hal.Simulated;

/// <summary>
/// The LEDs of a simulated unit, below <see cref="StatusLeds"/> as <see cref="Linux.LinuxLedOutputs"/> is on a real one:
/// each LED the board declares is one <see cref="SimulatedLed"/>, made when it is first looked for.
/// </summary>
public sealed class SimulatedLedOutputs : ILedOutputs
{
    private readonly Lock _gate = new();
    private readonly Dictionary<string, SimulatedLed> _leds = new(StringComparer.Ordinal);

    /// <summary>
    /// The LEDs blink by themselves (as an LED class device with the kernel's timer trigger); false: they only switch
    /// on and off, and <see cref="StatusLeds"/> blinks them on its clock (as a GPIO line).
    /// </summary>
    public bool CanBlink { get; init; } = true;

    public IReadOnlyList<ILedOutput> Find(BoardLed led)
    {
        lock (_gate)
        {
            if (!_leds.TryGetValue(led.Name, out var found))
            {
                found = new SimulatedLed(led.Name, CanBlink);
                _leds[led.Name] = found;
            }
            return [found];
        }
    }

    /// <summary>The LED named <paramref name="name"/> in the board, or null before the status LEDs first looked for it.</summary>
    public SimulatedLed? this[string name]
    {
        get { lock (_gate) { return _leds.GetValueOrDefault(name); } }
    }

    /// <summary>What each LED looked for so far shows now.</summary>
    public IReadOnlyDictionary<string, LedState> States()
    {
        lock (_gate) { return _leds.ToDictionary(l => l.Key, l => l.Value.State, StringComparer.Ordinal); }
    }
}

/// <summary>One simulated LED: it keeps what it was last told (<see cref="State"/>) and counts the changes.</summary>
public sealed class SimulatedLed(string name, bool canBlink) : ILedOutput
{
    private readonly Lock _gate = new();
    private LedState _state = LedState.Off;
    private int _writes;

    public string Device { get; } = $"simulated LED '{name}'";

    /// <summary>Off, on, or blinking by itself.</summary>
    public LedState State { get { lock (_gate) { return _state; } } }

    /// <summary>How many times it was switched or set blinking.</summary>
    public int Writes { get { lock (_gate) { return _writes; } } }

    public void Set(bool lit)
    {
        lock (_gate)
        {
            _state = lit ? LedState.On : LedState.Off;
            _writes++;
        }
    }

    public bool TryBlink(TimeSpan halfPeriod)
    {
        if (!canBlink) { return false; }
        lock (_gate)
        {
            _state = LedState.Blink;
            _writes++;
        }
        return true;
    }
}
