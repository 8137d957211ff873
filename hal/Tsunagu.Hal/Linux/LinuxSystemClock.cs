using System.Globalization;
using System.Runtime.InteropServices;

namespace Tsunagu.Hal.Linux;

/// <summary>The programs <see cref="LinuxSystemClock"/> runs and the RTC it writes when present.</summary>
public sealed record LinuxClockOptions
{
    public string Date { get; init; } = "date";

    /// <summary>Writes the system time to the RTC (`hwclock -u -w`) after a set; null: never.</summary>
    public string? Hwclock { get; init; } = "hwclock";

    /// <summary>The RTC; <see cref="Hwclock"/> runs only when it exists.</summary>
    public string RtcDevice { get; init; } = "/dev/rtc0";
}

/// <summary>
/// The kernel's wall clock: set with `date -u -s` (coreutils and busybox alike) and copied to the RTC when there is
/// one; synchronized when adjtimex(2) does not report TIME_ERROR (an NTP daemon keeps it).
/// </summary>
public sealed partial class LinuxSystemClock(ICommandRunner runner, LinuxClockOptions? options = null) : ISystemClock
{
    private const int TimeError = 5;
    private readonly LinuxClockOptions _o = options ?? new LinuxClockOptions();

    public bool IsSynchronized
    {
        get
        {
            var state = ReadClockState();
            return state >= 0 && state != TimeError;
        }
    }

    public async Task SetAsync(DateTimeOffset utc, CancellationToken cancellationToken)
    {
        var text = utc.UtcDateTime.ToString("yyyy-MM-dd HH:mm:ss", CultureInfo.InvariantCulture);
        (await runner.RunAsync(new CommandLine(_o.Date, "-u", "-s", text), null, cancellationToken)).EnsureSuccess("setting the system clock");
        if (_o.Hwclock is { } hwclock && File.Exists(_o.RtcDevice))
        {
            (await runner.RunAsync(new CommandLine(hwclock, "-u", "-w", "-f", _o.RtcDevice), null, cancellationToken)).EnsureSuccess("writing the system time to the RTC");
        }
    }

    /// <summary>adjtimex(2) with modes 0 (read only): the clock state, or -1 when the call failed.</summary>
    private static unsafe int ReadClockState()
    {
        // struct timex is 208 bytes on 64-bit Linux; zeroed, its first field (modes) asks for nothing to change
        var timex = stackalloc byte[512];
        new Span<byte>(timex, 512).Clear();
        return Adjtimex(timex);
    }

    [LibraryImport("libc", EntryPoint = "adjtimex", SetLastError = true)]
    private static unsafe partial int Adjtimex(byte* timex);
}
