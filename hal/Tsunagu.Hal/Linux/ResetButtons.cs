using System.Buffers.Binary;

namespace Tsunagu.Hal.Linux;

/// <summary>Where <see cref="EvdevResetButton"/> looks for its input device.</summary>
public sealed record EvdevButtonOptions
{
    /// <summary>The input class directory: `eventN/device/name` names each event device.</summary>
    public string SysInputRoot { get; init; } = "/sys/class/input";

    /// <summary>Where the event device files are (`eventN`).</summary>
    public string DevInputRoot { get; init; } = "/dev/input";

    /// <summary>Opens an event device for reading; default: the file itself, unbuffered. Tests pass a pipe.</summary>
    public Func<string, Stream>? OpenDevice { get; init; }
}

/// <summary>
/// A button that is a key of a Linux input device (gpio-keys on a real router; on the QEMU board a key of the
/// emulated keyboard held through the QEMU monitor). Reads `struct input_event` records from `/dev/input/eventN`,
/// where N is the device whose `/sys/class/input/eventN/device/name` is <see cref="BoardEvdevKey.DeviceName"/>, while
/// a wait is in progress. On 64-bit Linux a record is 24 bytes: a 16-byte timeval, u16 type, u16 code, s32 value;
/// EV_KEY (1) with value 1 is a press, 0 a release, 2 an autorepeat (reported as <see cref="LongPressDetector.Held"/>:
/// the key was already down when the device was opened). The long-press logic is <see cref="LongPressDetector"/>'s;
/// the record's own time stamp is ignored.
/// </summary>
public sealed class EvdevResetButton : ResetButtonBase
{
    /// <summary>EV_KEY of linux/input-event-codes.h.</summary>
    public const ushort EvKey = 1;

    private readonly BoardEvdevKey _key;
    private readonly EvdevButtonOptions _options;

    public EvdevResetButton(BoardButton button, EvdevButtonOptions? options = null, TimeProvider? time = null)
        : base(CheckedLongPress(button), time)
    {
        _key = button.Evdev ?? throw new ArgumentException($"button '{button.Name}' is not an input device key", nameof(button));
        _options = options ?? new EvdevButtonOptions();
    }

    internal static TimeSpan CheckedLongPress(BoardButton button) => button.LongPressSeconds > 0 ? button.LongPress
        : throw new ArgumentException($"button '{button.Name}': longPressSeconds must be positive", nameof(button));

    /// <summary>Size of one `struct input_event`: two longs of timeval, then type, code, value.</summary>
    public static int EventSize => 2 * IntPtr.Size + 8;

    /// <summary>The event device file of the configured input device.</summary>
    /// <exception cref="HalException">No input device has that name (not transient).</exception>
    public string FindDevice()
    {
        var root = _options.SysInputRoot;
        var seen = new List<string>();
        if (Directory.Exists(root))
        {
            foreach (var entry in Directory.EnumerateFileSystemEntries(root, "event*").Order(StringComparer.Ordinal))
            {
                var nameFile = Path.Combine(entry, "device", "name");
                string name;
                try
                {
                    name = File.ReadAllText(nameFile).TrimEnd('\n', '\r', ' ');
                }
                catch (Exception e) when (e is IOException or UnauthorizedAccessException)
                {
                    continue;
                }
                if (name == _key.DeviceName) { return Path.Combine(_options.DevInputRoot, Path.GetFileName(entry)); }
                seen.Add($"{Path.GetFileName(entry)} '{name}'");
            }
        }
        throw new HalException($"{root}: no input device named '{_key.DeviceName}'" + (seen.Count == 0 ? " (no event devices)" : $" (found {string.Join(", ", seen)})"),
            isTransient: false);
    }

    protected override string Describe() => $"input device '{_key.DeviceName}'";

    protected override async Task FeedAsync(LongPressDetector detector, CancellationToken cancellationToken)
    {
        var device = FindDevice();
        Stream stream;
        try
        {
            stream = _options.OpenDevice is { } open ? open(device)
                : new FileStream(device, FileMode.Open, FileAccess.Read, FileShare.ReadWrite, bufferSize: 0);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new HalException($"{device}: cannot open the input device '{_key.DeviceName}': {e.Message}", isTransient: false, e);
        }
        await using var deviceStream = stream;
        var size = EventSize;
        var buffer = new byte[size * 16];
        var filled = 0;
        Task<int>? read = null;
        // cancels the read left pending when the wait ends, so it does not take the next wait's events
        using var readCancel = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        try
        {
            while (true)
            {
                read = ReadAsync(deviceStream, buffer.AsMemory(filled), device, readCancel.Token);
                // a read of a device file may not notice cancellation: the wait ends without it
                var n = await read.WaitAsync(cancellationToken);
                read = null;
                if (n == 0) { throw new HalException($"{device}: the input device '{_key.DeviceName}' went away", isTransient: true); }
                filled += n;
                var offset = 0;
                for (; filled - offset >= size; offset += size)
                {
                    var record = buffer.AsSpan(offset, size);
                    var type = BinaryPrimitives.ReadUInt16LittleEndian(record[(size - 8)..]);
                    var code = BinaryPrimitives.ReadUInt16LittleEndian(record[(size - 6)..]);
                    var value = BinaryPrimitives.ReadInt32LittleEndian(record[(size - 4)..]);
                    if (type != EvKey || code != _key.KeyCode) { continue; }
                    switch (value)
                    {
                        case 1: detector.Pressed(); break;
                        case 2: detector.Held(); break;
                        case 0: detector.Released(); break;
                    }
                }
                buffer.AsSpan(offset, filled - offset).CopyTo(buffer);
                filled -= offset;
            }
        }
        finally
        {
            await readCancel.CancelAsync();
            if (read is not null) { _ = read.ContinueWith(static t => _ = t.Exception, TaskScheduler.Default); }
        }
    }

    private static async Task<int> ReadAsync(Stream stream, Memory<byte> into, string device, CancellationToken cancellationToken)
    {
        try
        {
            return await stream.ReadAsync(into, cancellationToken);
        }
        catch (IOException e)
        {
            throw new HalException($"{device}: reading the input device failed: {e.Message}", isTransient: true, e);
        }
    }
}

/// <summary>How <see cref="GpioResetButton"/> samples its line.</summary>
public sealed record GpioButtonOptions
{
    /// <summary>Time between two reads of the line.</summary>
    public TimeSpan PollInterval { get; init; } = TimeSpan.FromMilliseconds(20);
}

/// <summary>
/// A button on a raw GPIO line, polled every <see cref="GpioButtonOptions.PollInterval"/> (honouring active-low) while
/// a wait is in progress; an active line is reported as <see cref="LongPressDetector.Held"/>, an inactive one as
/// <see cref="LongPressDetector.Released"/>, so the line must be active without interruption for a long press; the
/// hold is judged at each poll.
/// </summary>
public sealed class GpioResetButton : ResetButtonBase
{
    private readonly BoardGpioLine _line;
    private readonly IGpioLines _gpio;
    private readonly GpioButtonOptions _options;
    private readonly TimeProvider _time;

    public GpioResetButton(BoardButton button, IGpioLines gpio, GpioButtonOptions? options = null, TimeProvider? time = null)
        : base(EvdevResetButton.CheckedLongPress(button), time, polled: true)
    {
        _line = button.Gpio ?? throw new ArgumentException($"button '{button.Name}' is not a GPIO line", nameof(button));
        _gpio = gpio;
        _options = options ?? new GpioButtonOptions();
        _time = time ?? TimeProvider.System;
    }

    protected override string Describe() => $"/dev/gpiochip{_line.Chip} line {_line.Line}";

    protected override async Task FeedAsync(LongPressDetector detector, CancellationToken cancellationToken)
    {
        while (true)
        {
            cancellationToken.ThrowIfCancellationRequested();
            if (_gpio.IsActive(_line)) { detector.Held(); } else { detector.Released(); }
            await Task.Delay(_options.PollInterval, _time, cancellationToken);
        }
    }
}

/// <summary>Builds the reset button a board declares.</summary>
public static class ResetButtons
{
    /// <summary>
    /// The board's `reset` button (<see cref="BoardButton.Reset"/>), or null when it has none. A GPIO button needs
    /// <paramref name="gpio"/>.
    /// </summary>
    /// <exception cref="HalException">The button is a GPIO line and no GPIO access was given.</exception>
    public static IResetButton? FromBoard(BoardDescription board, IGpioLines? gpio = null, EvdevButtonOptions? evdev = null,
        GpioButtonOptions? polling = null, TimeProvider? time = null)
    {
        var button = board.Button(BoardButton.Reset);
        if (button is null) { return null; }
        if (button.Evdev is not null) { return new EvdevResetButton(button, evdev, time); }
        return new GpioResetButton(button, gpio ?? throw new HalException($"board '{board.Name}': the reset button is a GPIO line but no GPIO access was given", isTransient: false),
            polling, time);
    }
}
