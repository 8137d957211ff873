using System.Globalization;

namespace Tsunagu.Cli.Chaos;

/// <summary>
/// The server process's wall clock, moved from outside as a wrong clock or an NTP step would move it: the server
/// runs under libfaketime (Debian package <c>faketime</c>), whose offset is read from a file that this class writes;
/// the library reads it again at most once a second (<see cref="Settle"/>), so the running server's clock jumps
/// without a restart. Monotonic time (timers, timeouts, <c>Stopwatch</c>) is left alone, as a real clock step leaves it.
/// </summary>
public sealed class ServerClock
{
    /// <summary>Where Debian's faketime package puts the library.</summary>
    public const string Library = "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1";

    /// <summary>How long after <see cref="Set"/> the server's clock has surely taken the new offset.</summary>
    public static readonly TimeSpan Settle = TimeSpan.FromSeconds(2);

    private readonly string _file;

    public ServerClock(string directory)
    {
        if (!IsAvailable)
        {
            throw new ArgumentException($"server-clock-skew needs libfaketime ({Library}): install the Debian package 'faketime'");
        }
        _file = Path.Combine(directory, "server-clock-offset");
        Set(TimeSpan.Zero);
    }

    public static bool IsAvailable => File.Exists(Library);

    public TimeSpan Offset { get; private set; }

    /// <summary>The environment that puts the server under this clock.</summary>
    public IReadOnlyDictionary<string, string> Environment => new Dictionary<string, string>
    {
        ["LD_PRELOAD"] = Library,
        ["FAKETIME_TIMESTAMP_FILE"] = _file,
        ["FAKETIME_CACHE_DURATION"] = "1",
        ["FAKETIME_DONT_FAKE_MONOTONIC"] = "1",
    };

    /// <summary>Sets the server's clock <paramref name="offset"/> away from the real one (takes effect within <see cref="Settle"/>).</summary>
    public void Set(TimeSpan offset)
    {
        var temporary = _file + ".new";
        File.WriteAllText(temporary, string.Create(CultureInfo.InvariantCulture, $"{(offset < TimeSpan.Zero ? "-" : "+")}{(long)Math.Abs(offset.TotalSeconds)}\n"));
        File.Move(temporary, _file, overwrite: true);
        Offset = offset;
    }
}
