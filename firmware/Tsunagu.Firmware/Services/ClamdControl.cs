using System.Net.Sockets;
using System.Text;

namespace Tsunagu.Firmware.Services;

/// <summary>clamd did not answer a command on its socket as it should.</summary>
public sealed class ClamdException(string message, Exception? inner = null) : Exception(message, inner);

/// <summary>
/// Commands on clamd's local socket (the `z` form: NUL-terminated command and answer). <see cref="ReloadAsync"/> is how
/// new signatures take effect: clamd loads the database directory again while it keeps scanning with the old one (or,
/// on a board without memory for two, holds scans until it is done); a database that fails to load leaves the old one
/// in force.
/// </summary>
public static class ClamdControl
{
    /// <summary>Sends <paramref name="command"/> and returns clamd's answer without its terminator.</summary>
    /// <exception cref="ClamdException">The socket is unreachable or closed before an answer.</exception>
    public static async Task<string> SendAsync(string socketPath, string command, CancellationToken ct)
    {
        using var socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        try
        {
            await socket.ConnectAsync(new UnixDomainSocketEndPoint(socketPath), ct);
            await socket.SendAsync(Encoding.ASCII.GetBytes($"z{command}\0"), SocketFlags.None, ct);
            var answer = new MemoryStream();
            var buffer = new byte[512];
            while (answer.Length < 65536)
            {
                var n = await socket.ReceiveAsync(buffer, SocketFlags.None, ct);
                if (n == 0) { break; }
                answer.Write(buffer, 0, n);
                if (buffer[n - 1] == 0) { break; }
            }
            var text = Encoding.ASCII.GetString(answer.ToArray()).TrimEnd('\0', '\n');
            return text.Length > 0 ? text : throw new ClamdException($"clamd at {socketPath} closed the connection without answering {command}");
        }
        catch (SocketException e)
        {
            throw new ClamdException($"clamd at {socketPath} is unreachable: {e.Message}", e);
        }
    }

    /// <summary>Tells clamd to load its database directory again.</summary>
    /// <exception cref="ClamdException">clamd is unreachable or did not accept the reload.</exception>
    public static async Task ReloadAsync(string socketPath, CancellationToken ct)
    {
        var answer = await SendAsync(socketPath, "RELOAD", ct);
        if (answer != "RELOADING")
        {
            throw new ClamdException($"clamd at {socketPath} answered '{answer}' to RELOAD");
        }
    }
}
