using System.Runtime.InteropServices;
using Microsoft.Win32.SafeHandles;

namespace Tsunagu.Hal.Linux;

/// <summary>Where <see cref="LinuxWatchdog"/> finds the watchdog and how it drives it.</summary>
public sealed record LinuxWatchdogOptions
{
    /// <summary>The watchdog's character device (Linux watchdog API), e.g. /dev/watchdog.</summary>
    public required string Device { get; init; }

    public required TimeSpan Timeout { get; init; }

    public required TimeSpan FeedInterval { get; init; }

    /// <summary>
    /// Sets the timeout in seconds on the open device and returns the one the driver chose; default: the
    /// WDIOC_SETTIMEOUT ioctl. Tests pass a function for a device file that is not a watchdog.
    /// </summary>
    public Func<SafeFileHandle, int, int>? SetTimeout { get; init; }

    /// <summary>The options of the board's watchdog.</summary>
    public static LinuxWatchdogOptions FromBoard(BoardWatchdog watchdog) =>
        new() { Device = watchdog.Device, Timeout = watchdog.Timeout, FeedInterval = watchdog.FeedInterval };
}

/// <summary>
/// A Linux watchdog device (drivers/watchdog, e.g. i6300esb): opening it starts it, every write feeds it, the timeout
/// is set with WDIOC_SETTIMEOUT. It is closed without the magic 'V', so the kernel leaves it running: if the supervisor
/// ends and is not started again in time, the unit restarts.
/// </summary>
public sealed partial class LinuxWatchdog(LinuxWatchdogOptions options) : IWatchdog
{
    /// <summary>_IOWR('W', 6, int), the same on x86_64 and arm64.</summary>
    public const uint WdiocSetTimeout = 0xC0045706;

    private static readonly byte[] Keepalive = "k"u8.ToArray();
    private readonly Lock _gate = new();
    private FileStream? _device;

    public TimeSpan Timeout { get; private set; } = options.Timeout;

    public TimeSpan FeedInterval => options.FeedInterval;

    public void Arm()
    {
        lock (_gate)
        {
            if (_device is not null) { return; }
            SafeFileHandle handle;
            try
            {
                handle = File.OpenHandle(options.Device, FileMode.Open, FileAccess.Write, FileShare.ReadWrite);
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                throw new HalException($"watchdog {options.Device}: cannot open it: {e.Message}", isTransient: false, e);
            }
            try
            {
                var seconds = (int)Math.Round(options.Timeout.TotalSeconds);
                var chosen = (options.SetTimeout ?? SetTimeoutIoctl)(handle, seconds);
                if (chosen <= 0)
                {
                    throw new HalException($"watchdog {options.Device}: the driver reports a timeout of {chosen} s for the {seconds} s asked", isTransient: false);
                }
                if (chosen <= options.FeedInterval.TotalSeconds)
                {
                    throw new HalException(
                        $"watchdog {options.Device}: the driver chose a timeout of {chosen} s, not longer than the feed interval ({options.FeedInterval.TotalSeconds:0} s)",
                        isTransient: false);
                }
                Timeout = TimeSpan.FromSeconds(chosen);
                _device = new FileStream(handle, FileAccess.Write, bufferSize: 0);
            }
            catch
            {
                handle.Dispose();
                throw;
            }
            WriteKeepalive();
        }
    }

    public void Feed()
    {
        lock (_gate)
        {
            if (_device is null) { throw new HalException($"watchdog {options.Device}: fed before it was armed", isTransient: false); }
            WriteKeepalive();
        }
    }

    private void WriteKeepalive()
    {
        try
        {
            _device!.Write(Keepalive);
        }
        catch (IOException e)
        {
            throw new HalException($"watchdog {options.Device}: the feed was refused: {e.Message}", isTransient: true, e);
        }
    }

    private int SetTimeoutIoctl(SafeFileHandle handle, int seconds)
    {
        var value = seconds;
        if (Ioctl((int)handle.DangerousGetHandle(), WdiocSetTimeout, ref value) != 0)
        {
            var errno = Marshal.GetLastPInvokeError();
            throw new HalException($"watchdog {options.Device}: WDIOC_SETTIMEOUT {seconds} s refused: errno {errno}"
                                   + (errno == 25 ? " (not a watchdog device)" : ""), isTransient: false);
        }
        return value;
    }

    [LibraryImport("libc", EntryPoint = "ioctl", SetLastError = true)]
    private static partial int Ioctl(int fd, nuint request, ref int value);

    /// <summary>Closes the device without the magic close: the watchdog keeps running.</summary>
    public void Dispose()
    {
        lock (_gate)
        {
            _device?.Dispose();
            _device = null;
        }
    }
}
