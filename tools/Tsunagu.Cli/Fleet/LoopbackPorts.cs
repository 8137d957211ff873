using System.Globalization;
using System.Net;
using System.Net.Sockets;

namespace Tsunagu.Cli.Fleet;

/// <summary>
/// Loopback ports for the services a test or the fleet simulator starts itself (a server, a broker, PostgreSQL, a QEMU
/// guest's socket link).
/// A port is chosen here and bound by another process a moment later, so it is taken <em>below</em> the kernel's
/// ephemeral range (<c>/proc/sys/net/ipv4/ip_local_port_range</c>): a client connection's source port, which the kernel
/// picks from that range, can then never take it in between. Asking the kernel for port 0 and closing it again, as this
/// did before, hands out exactly the ports the next outgoing connection may get. One process never gets a port twice,
/// a port something listens on (another process's service) is passed over, and a port is given only with its lock file
/// (<c>tsunagu-ports/PORT.lock</c> in the temporary directory, held exclusively until the process ends): two processes
/// choosing at once (the integration and system tests run side by side) never get the same one.
/// </summary>
public static class LoopbackPorts
{
    /// <summary>The lowest port handed out: above the ports daemons are configured with by default.</summary>
    public const int Lowest = 20000;

    /// <summary>The ephemeral range when <c>ip_local_port_range</c> cannot be read (Linux's default).</summary>
    public static readonly (int Low, int High) DefaultEphemeral = (32768, 60999);

    private static readonly Lock Gate = new();
    private static readonly HashSet<int> Given = [];
    private static readonly List<FileStream> Held = [];
    private static int _next = -1;

    /// <summary>Where the ports' lock files are.</summary>
    public static string LockDirectory { get; } = Path.Combine(Path.GetTempPath(), "tsunagu-ports");

    /// <summary>The kernel's ephemeral range, or <see cref="DefaultEphemeral"/>.</summary>
    public static (int Low, int High) EphemeralRange()
    {
        const string file = "/proc/sys/net/ipv4/ip_local_port_range";
        return File.Exists(file) ? ParseRange(File.ReadAllText(file)) : DefaultEphemeral;
    }

    /// <summary>Reads <c>ip_local_port_range</c>'s two numbers.</summary>
    /// <exception cref="FormatException">Not two ports, low first.</exception>
    public static (int Low, int High) ParseRange(string text)
    {
        var parts = text.Split([' ', '\t', '\n'], StringSplitOptions.RemoveEmptyEntries);
        if (parts.Length != 2
            || !int.TryParse(parts[0], NumberStyles.None, CultureInfo.InvariantCulture, out var low)
            || !int.TryParse(parts[1], NumberStyles.None, CultureInfo.InvariantCulture, out var high)
            || low < 1 || high > 65535 || low > high)
        {
            throw new FormatException($"ip_local_port_range: not two ports, low first: '{text.Trim()}'");
        }
        return (low, high);
    }

    /// <summary>
    /// The ports handed out for <paramref name="ephemeral"/>: from <see cref="Lowest"/> to below the range, or, when the
    /// range starts too low to leave 1,000 ports there, above it.
    /// </summary>
    /// <exception cref="InvalidOperationException">No 1,000 ports outside the range.</exception>
    public static (int Low, int High) Pool((int Low, int High) ephemeral)
    {
        if (ephemeral.Low - 1 - Lowest >= 1000) { return (Lowest, ephemeral.Low - 1); }
        if (65535 - (ephemeral.High + 1) >= 1000) { return (Math.Max(ephemeral.High + 1, Lowest), 65535); }
        throw new InvalidOperationException(
            $"the ephemeral port range {ephemeral.Low}-{ephemeral.High} leaves no 1,000 ports above {Lowest} for the services tests start; narrow net.ipv4.ip_local_port_range");
    }

    /// <summary>The port the next <see cref="Next"/> tries first (it may pass it over): lets a test take it beforehand.</summary>
    public static int Candidate()
    {
        var (low, high) = Pool(EphemeralRange());
        var size = high - low + 1;
        lock (Gate)
        {
            if (_next < 0) { _next = Random.Shared.Next(size); }
            return low + (_next % size);
        }
    }

    /// <summary>
    /// A port in <see cref="Pool"/> that nothing listens on now, this process was not given before and no other process
    /// holds the lock file of (<see cref="Claim"/>).
    /// </summary>
    /// <exception cref="InvalidOperationException">Every port of the pool was given or is in use.</exception>
    public static int Next()
    {
        var (low, high) = Pool(EphemeralRange());
        var size = high - low + 1;
        lock (Gate)
        {
            // each process starts at its own random place, so two test processes rarely walk the same ports
            if (_next < 0) { _next = Random.Shared.Next(size); }
            for (var tried = 0; tried < size; tried++)
            {
                var port = low + (_next++ % size);
                if (Given.Contains(port) || !Free(port) || Claim(port) is not { } claim) { continue; }
                Given.Add(port);
                Held.Add(claim);
                return port;
            }
        }
        throw new InvalidOperationException($"no free loopback port left in {low}-{high} ({Given.Count} given to this process)");
    }

    /// <summary>
    /// The port's lock file, held exclusively (an advisory lock, which the kernel drops when the process ends, however it
    /// ends); null when another process holds it.
    /// </summary>
    public static FileStream? Claim(int port)
    {
        Directory.CreateDirectory(LockDirectory);
        try
        {
            return new FileStream(Path.Combine(LockDirectory, port.ToString(CultureInfo.InvariantCulture) + ".lock"), FileMode.OpenOrCreate, FileAccess.ReadWrite, FileShare.None);
        }
        catch (IOException)
        {
            return null; // held by another process
        }
    }

    /// <summary>True when a TCP listener can bind <paramref name="port"/> on 127.0.0.1 now.</summary>
    public static bool Free(int port)
    {
        using var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        try
        {
            socket.Bind(new IPEndPoint(IPAddress.Loopback, port));
            socket.Listen(1);
            return true;
        }
        catch (SocketException e) when (e.SocketErrorCode is SocketError.AddressAlreadyInUse or SocketError.AccessDenied)
        {
            return false;
        }
    }
}
