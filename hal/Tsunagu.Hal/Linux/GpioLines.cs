using System.Device.Gpio;
using System.Device.Gpio.Drivers;

namespace Tsunagu.Hal.Linux;

/// <summary>
/// Raw GPIO lines, by chip number and line offset, at their electrical level (true = high). Active-low handling is
/// the caller's (see <see cref="BoardGpioLine.ActiveLow"/>). Lines are requested on first use.
/// </summary>
public interface IGpioLines : IDisposable
{
    /// <summary>Drives an output line high or low (requesting it as an output on first use).</summary>
    /// <exception cref="HalException">The chip or line cannot be opened or written.</exception>
    void Write(int chip, int line, bool high);

    /// <summary>Reads an input line's level (requesting it as an input on first use).</summary>
    /// <exception cref="HalException">The chip or line cannot be opened or read.</exception>
    bool Read(int chip, int line);
}

/// <summary>Helpers applying a board line's polarity.</summary>
public static class GpioLinesExtensions
{
    /// <summary>Sets <paramref name="line"/> active (lit, pressed...) or inactive, honouring <see cref="BoardGpioLine.ActiveLow"/>.</summary>
    public static void SetActive(this IGpioLines lines, BoardGpioLine line, bool active) => lines.Write(line.Chip, line.Line, active != line.ActiveLow);

    /// <summary>Whether <paramref name="line"/> is active, honouring <see cref="BoardGpioLine.ActiveLow"/>.</summary>
    public static bool IsActive(this IGpioLines lines, BoardGpioLine line) => lines.Read(line.Chip, line.Line) != line.ActiveLow;
}

/// <summary>
/// <see cref="IGpioLines"/> over the Linux GPIO character devices (`/dev/gpiochipN`) through System.Device.Gpio's
/// libgpiod driver (libgpiod must be installed on the unit). One controller per chip, opened on first use.
/// </summary>
public sealed class GpioLines : IGpioLines
{
    private readonly Lock _gate = new();
    private readonly Dictionary<int, GpioController> _chips = [];
    private readonly Dictionary<(int Chip, int Line), PinMode> _open = [];

    public void Write(int chip, int line, bool high)
    {
        lock (_gate)
        {
            try
            {
                var controller = Open(chip, line, PinMode.Output);
                controller.Write(line, high ? PinValue.High : PinValue.Low);
            }
            catch (Exception e) when (e is not HalException and (IOException or InvalidOperationException or ArgumentException or PlatformNotSupportedException or UnauthorizedAccessException or DllNotFoundException))
            {
                throw new HalException($"/dev/gpiochip{chip} line {line}: cannot write: {e.Message}", isTransient: false, e);
            }
        }
    }

    public bool Read(int chip, int line)
    {
        lock (_gate)
        {
            try
            {
                var controller = Open(chip, line, PinMode.Input);
                return controller.Read(line) == PinValue.High;
            }
            catch (Exception e) when (e is not HalException and (IOException or InvalidOperationException or ArgumentException or PlatformNotSupportedException or UnauthorizedAccessException or DllNotFoundException))
            {
                throw new HalException($"/dev/gpiochip{chip} line {line}: cannot read: {e.Message}", isTransient: false, e);
            }
        }
    }

    private GpioController Open(int chip, int line, PinMode mode)
    {
        if (!_chips.TryGetValue(chip, out var controller))
        {
            controller = new GpioController(new LibGpiodDriver(chip));
            _chips[chip] = controller;
        }
        if (!_open.TryGetValue((chip, line), out var current))
        {
            controller.OpenPin(line, mode);
            _open[(chip, line)] = mode;
        }
        else if (current != mode)
        {
            controller.SetPinMode(line, mode);
            _open[(chip, line)] = mode;
        }
        return controller;
    }

    public void Dispose()
    {
        lock (_gate)
        {
            foreach (var controller in _chips.Values) { controller.Dispose(); }
            _chips.Clear();
            _open.Clear();
        }
    }
}
