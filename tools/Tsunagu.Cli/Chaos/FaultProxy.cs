using System.Collections.Concurrent;
using System.Net;
using System.Net.Sockets;

namespace Tsunagu.Cli.Chaos;

/// <summary>What the proxy does to the connections between the units and the server.</summary>
public enum LinkMode
{
    /// <summary>Bytes pass both ways.</summary>
    Pass,
    /// <summary>A partition: connections are taken and held but nothing passes either way; open ones go silent too.</summary>
    Blackhole,
    /// <summary>Every connection, new or open, is closed with a TCP reset.</summary>
    Reset,
    /// <summary>Bytes pass, each chunk after <see cref="FaultProxy.SlowDelay"/>.</summary>
    Slow,
}

/// <summary>
/// A TCP proxy on loopback between the units and the server that can blackhole, reset or slow connections
/// (the nemesis's network partitions and delays). A connection taken in one mode is cut when the mode changes
/// to <see cref="LinkMode.Reset"/>, and goes silent while the mode is <see cref="LinkMode.Blackhole"/>.
/// </summary>
public sealed class FaultProxy : IAsyncDisposable
{
    private readonly TcpListener _listener;
    private readonly int _targetPort;
    private readonly CancellationTokenSource _stop = new();
    private readonly ConcurrentDictionary<long, (TcpClient Client, TcpClient? Upstream)> _open = new();
    private readonly Task _accepting;
    private long _next;
    private volatile LinkMode _mode = LinkMode.Pass;

    public FaultProxy(int targetPort)
    {
        _targetPort = targetPort;
        _listener = new TcpListener(IPAddress.Loopback, 0);
        _listener.Start(512);
        Port = ((IPEndPoint)_listener.LocalEndpoint).Port;
        _accepting = AcceptAsync();
    }

    public int Port { get; }
    public LinkMode Mode => _mode;
    public TimeSpan SlowDelay { get; set; } = TimeSpan.FromMilliseconds(300);

    /// <summary>Connections taken since start.</summary>
    public long Accepted => Interlocked.Read(ref _next);

    public void SetMode(LinkMode mode)
    {
        _mode = mode;
        if (mode == LinkMode.Reset)
        {
            foreach (var (id, pair) in _open)
            {
                Abort(pair.Client);
                if (pair.Upstream is { } upstream) { Abort(upstream); }
                _open.TryRemove(id, out _);
            }
        }
    }

    private static void Abort(TcpClient client)
    {
        try
        {
            // a connection already closed by its own side has no socket left to reset
            if (client.Client is { } socket)
            {
                socket.LingerState = new LingerOption(true, 0); // close sends RST
            }
            client.Close();
        }
        catch (Exception e) when (e is ObjectDisposedException or SocketException)
        {
            // closed by its own side in the meantime: nothing left to reset
        }
    }

    private async Task AcceptAsync()
    {
        while (!_stop.IsCancellationRequested)
        {
            TcpClient client;
            try
            {
                client = await _listener.AcceptTcpClientAsync(_stop.Token);
            }
            catch (Exception e) when (e is OperationCanceledException or ObjectDisposedException or SocketException)
            {
                return;
            }
            var id = Interlocked.Increment(ref _next);
            _ = Task.Run(() => ServeAsync(id, client));
        }
    }

    private async Task ServeAsync(long id, TcpClient client)
    {
        TcpClient? upstream = null;
        try
        {
            if (_mode == LinkMode.Reset)
            {
                Abort(client);
                return;
            }
            _open[id] = (client, null);
            while (_mode == LinkMode.Blackhole && !_stop.IsCancellationRequested)
            {
                await Task.Delay(50, _stop.Token);
            }
            if (!_open.ContainsKey(id)) { return; }
            upstream = new TcpClient();
            await upstream.ConnectAsync(IPAddress.Loopback, _targetPort, _stop.Token);
            _open[id] = (client, upstream);
            using var both = CancellationTokenSource.CreateLinkedTokenSource(_stop.Token);
            var a = PumpAsync(client.GetStream(), upstream.GetStream(), both.Token);
            var b = PumpAsync(upstream.GetStream(), client.GetStream(), both.Token);
            await Task.WhenAny(a, b);
            await both.CancelAsync();
        }
        catch (Exception e) when (e is IOException or SocketException or OperationCanceledException or ObjectDisposedException or InvalidOperationException)
        {
            // a connection the fault (or the server's restart) ended: the unit sees it as it would on a real line
        }
        finally
        {
            _open.TryRemove(id, out _);
            client.Dispose();
            upstream?.Dispose();
        }
    }

    private async Task PumpAsync(NetworkStream from, NetworkStream to, CancellationToken ct)
    {
        var buffer = new byte[16 * 1024];
        while (true)
        {
            var read = await from.ReadAsync(buffer, ct);
            if (read == 0) { return; }
            while (_mode == LinkMode.Blackhole)
            {
                await Task.Delay(50, ct);
            }
            if (_mode == LinkMode.Slow)
            {
                await Task.Delay(SlowDelay, ct);
            }
            await to.WriteAsync(buffer.AsMemory(0, read), ct);
        }
    }

    public async ValueTask DisposeAsync()
    {
        await _stop.CancelAsync();
        _listener.Stop();
        foreach (var (_, pair) in _open)
        {
            pair.Client.Dispose();
            pair.Upstream?.Dispose();
        }
        await _accepting;
        _stop.Dispose();
    }
}
