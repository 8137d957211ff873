using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using Tsunagu.Firmware.Net;
using Tsunagu.Hal;
using Tsunagu.Protocol;

namespace Tsunagu.Bench;

/// <summary>
/// A unit's network for the load generator: its connections leave from its own loopback address (127.x.y.z), as units
/// of a real fleet come from their own addresses, so HAProxy names each in X-Forwarded-For and the per-source limit
/// counts each on its own row.
/// </summary>
public sealed class LoopbackSource(IPAddress address) : INetworkAccess
{
    /// <summary>The address of unit <paramref name="index"/>: 127.1.0.1 upwards, the last byte 1..250.</summary>
    public static IPAddress For(int index) =>
        new([127, (byte)(1 + index / (250 * 256) % 250), (byte)(index / 250 % 256), (byte)(1 + index % 250)]);

    /// <summary>A socket handler given as it is (a bench's own client) gets the source address here.</summary>
    public HttpMessageHandler WrapHandler(HttpMessageHandler inner)
    {
        if (inner is SocketsHttpHandler sockets)
        {
            ConfigureSockets(sockets);
        }
        return inner;
    }

    /// <summary>Every socket handler a unit client makes, its first and each one after a dropped pool, connects from the unit's address.</summary>
    public void ConfigureSockets(SocketsHttpHandler handler) =>
        handler.ConnectCallback = async (context, ct) =>
        {
            var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
            try
            {
                socket.Bind(new IPEndPoint(address, 0));
                await socket.ConnectAsync(context.DnsEndPoint, ct);
                return new NetworkStream(socket, ownsSocket: true);
            }
            catch
            {
                socket.Dispose();
                throw;
            }
        };

    public void EnsureRoute() { }
}

/// <summary>
/// One steady-state unit of the load generator: its identity, secret, address, the revision it applied and the nonce of the
/// host's last answer (for its next steady check).
/// </summary>
public sealed class LoadUnit(int index, FactoryIdentity identity, byte[] secret)
{
    public int Index { get; } = index;
    public FactoryIdentity Identity { get; } = identity;
    public byte[] Secret { get; } = secret;
    public IPAddress Source { get; } = LoopbackSource.For(index);
    public int? AppliedRevision { get; set; }
    public bool Acknowledged { get; set; }
    public CheckNonce? Nonce { get; set; }
}

/// <summary>How one check-in ended.</summary>
public enum CheckInOutcome { Ok, ServerError, ClientError, Transport }

/// <summary>
/// The periodic check of a Ready unit whose host token expired (30-minute interval, 30-minute token), exactly the
/// requests the supervisor makes (HostSession, VersionCheck, ServiceConfig, Ready states): on a new TLS connection
/// (a unit hangs up its connection after 15 s idle) a challenge, a session with the proof, the version check, the
/// service configuration and the ready report; the configuration's acknowledgement only when its revision is new to
/// the unit. Made with the firmware's own <see cref="UnitClient"/> (pinning, timeouts, error handling).
/// </summary>
public static class CheckIn
{
    public static readonly Inventory FactoryInventory = new(Tsunagu.Demo.DemoCatalogue.HardwareVersion, Tsunagu.Demo.DemoCatalogue.OsVersion,
        Tsunagu.Demo.DemoCatalogue.FactoryApplications);

    public static async Task<(CheckInOutcome Outcome, int Requests, string? Error)> RunAsync(Uri server, string pin, LoadUnit unit, CancellationToken ct)
    {
        var requests = 0;
        using var client = new UnitClient(new LoopbackSource(unit.Source), [pin]);
        try
        {
            requests += 2;
            var session = await client.AuthenticateAsync(server, ProofPurpose.Host, unit.Identity, unit.Secret, ct);
            requests++;
            var check = await client.VersionCheckAsync(server, session.Token, new VersionCheckRequest(FactoryInventory, new UnitLoad(0.05, 0.01), false, null), ct);
            if (check.Update is not null)
            {
                return (CheckInOutcome.ClientError, requests, $"an update was offered ({check.Update.UpdateId}): not a steady-state unit");
            }
            try
            {
                requests++;
                var config = await client.GetServiceConfigAsync(server, session.Token, ct);
                if (unit.AppliedRevision != config.Revision || !unit.Acknowledged)
                {
                    requests++;
                    await client.AckServiceConfigAsync(server, session.Token, new ServiceConfigAck(config.Revision, true, null), ct);
                    unit.AppliedRevision = config.Revision;
                    unit.Acknowledged = true;
                }
            }
            catch (ServerException e) when (e.ProblemType == ProblemTypes.NotFound)
            {
                // no configuration assigned: the unit keeps what runs (ServiceConfigState)
            }
            requests++;
            var ack = await client.ReportReadyAsync(server, session.Token, new ReadyReport(FactoryInventory, unit.AppliedRevision, "192.0.2.10"), ct);
            unit.Nonce = ack.NextCheck;
            return (CheckInOutcome.Ok, requests, null);
        }
        catch (ServerException e)
        {
            return Failed(e, requests);
        }
    }

    /// <summary>
    /// The periodic check of a steady unit as the supervisor's SteadyCheck state makes it (docs/protocol.md, "Steady
    /// check"): one request on a new TLS connection, proved over the nonce of the host's last answer, which it replaces
    /// with the answer's next one. An answer other than "nothing to do" is an error here (the load is of steady units). A
    /// unit that holds no nonce (its last check was refused or not steady) runs the full exchange, as the firmware does.
    /// </summary>
    public static async Task<(CheckInOutcome Outcome, int Requests, string? Error)> SteadyAsync(Uri server, string pin, LoadUnit unit, CancellationToken ct)
    {
        if (unit.Nonce is not { } nonce)
        {
            return await RunAsync(server, pin, unit, ct);
        }
        using var client = new UnitClient(new LoopbackSource(unit.Source), [pin]);
        try
        {
            var proof = UnitCredentials.ComputeProof(unit.Secret, ProofPurpose.SteadyCheck, unit.Identity.Mac, nonce.Id, nonce.Nonce);
            var answer = await client.SteadyCheckAsync(server, new SteadyCheckRequest(unit.Identity.Mac, nonce.Id, proof, FactoryInventory,
                SettingsRevision: 1, unit.AppliedRevision, "192.0.2.10"), ct);
            unit.Nonce = answer.Next;
            return answer.Steady
                ? (CheckInOutcome.Ok, 1, null)
                : (CheckInOutcome.ClientError, 1, $"unit {unit.Identity.Mac} not steady: {answer.Reason}");
        }
        catch (ServerException e)
        {
            // a refusal used the nonce up (or it was never good); no answer or a 5xx leaves it for the next check
            if (e.Status is { } status && (int)status < 500) { unit.Nonce = null; }
            return Failed(e, 1);
        }
    }

    private static (CheckInOutcome Outcome, int Requests, string? Error) Failed(ServerException e, int requests) =>
        e.Status is { } status
            ? ((int)status >= 500 ? CheckInOutcome.ServerError : CheckInOutcome.ClientError, requests, e.Message)
            : (CheckInOutcome.Transport, requests, e.Message);
}

/// <summary>What an open-loop run of check-ins measured.</summary>
/// <param name="Due">Check-ins due in the run's duration at its rate.</param>
/// <param name="Scheduled">Those started (the rest were held back by the in-flight cap until the duration ended).</param>
public sealed record LoadRun(int Due, int Scheduled, int Ok, int ServerErrors, int ClientErrors, int TransportErrors, long Requests, double Seconds,
    double P50Ms, double P99Ms, double MaxMs, int MaxInFlight, IReadOnlyList<string> FirstErrors)
{
    public double PerSecond => Ok / Seconds;
}

/// <summary>
/// Open loop: check-ins are due at a fixed rate whatever the answers; latency counts from when one was due (a check-in
/// held back by the cap on those in flight is late, and that lateness is in its latency). None starts after the
/// duration (unless <c>startAll</c>: every one due is started, however late); those in flight then are waited for (each
/// bounded by the client's 30 s timeout). At most
/// maxInFlight at once (each its own TLS connection).
/// </summary>
public static class OpenLoop
{
    public static async Task<LoadRun> RunAsync(Func<int, CancellationToken, Task<(CheckInOutcome Outcome, int Requests, string? Error)>> checkIn,
        double rate, TimeSpan duration, int maxInFlight, CancellationToken ct, bool startAll = false)
    {
        using var slots = new SemaphoreSlim(maxInFlight);
        var latencies = new List<double>();
        var errors = new List<string>();
        int ok = 0, server = 0, client = 0, transport = 0, inFlight = 0, maxSeen = 0;
        long requests = 0;
        var tasks = new List<Task>();
        var clock = Stopwatch.StartNew();
        var scheduled = 0;
        var total = (int)Math.Round(rate * duration.TotalSeconds);
        for (var i = 0; i < total; i++)
        {
            if (!startAll && clock.Elapsed >= duration)
            {
                break; // bounded: what was due but could not start by the end (in-flight cap reached) is counted as not sent
            }
            var due = TimeSpan.FromSeconds(i / rate);
            var wait = due - clock.Elapsed;
            if (wait > TimeSpan.FromMilliseconds(1)) { await Task.Delay(wait, ct); }
            await slots.WaitAsync(ct);
            var now = Interlocked.Increment(ref inFlight);
            InterlockedMax(ref maxSeen, now);
            scheduled++;
            var index = i;
            tasks.Add(Task.Run(async () =>
            {
                try
                {
                    var (outcome, made, error) = await checkIn(index, ct);
                    var latency = (clock.Elapsed - due).TotalMilliseconds;
                    Interlocked.Add(ref requests, made);
                    lock (latencies)
                    {
                        latencies.Add(latency);
                        if (error is not null && errors.Count < 5) { errors.Add(error); }
                    }
                    _ = outcome switch
                    {
                        CheckInOutcome.Ok => Interlocked.Increment(ref ok),
                        CheckInOutcome.ServerError => Interlocked.Increment(ref server),
                        CheckInOutcome.ClientError => Interlocked.Increment(ref client),
                        _ => Interlocked.Increment(ref transport),
                    };
                }
                finally
                {
                    Interlocked.Decrement(ref inFlight);
                    slots.Release();
                }
            }, ct));
        }
        await Task.WhenAll(tasks);
        var seconds = clock.Elapsed.TotalSeconds;
        var sorted = latencies.Order().ToArray();
        double Percentile(double p) => sorted.Length == 0 ? 0 : sorted[Math.Min(sorted.Length - 1, (int)(sorted.Length * p))];
        return new LoadRun(total, scheduled, ok, server, client, transport, requests, seconds, Percentile(0.5), Percentile(0.99),
            sorted.Length == 0 ? 0 : sorted[^1], maxSeen, errors);
    }

    private static void InterlockedMax(ref int target, int value)
    {
        var seen = Volatile.Read(ref target);
        while (value > seen)
        {
            var previous = Interlocked.CompareExchange(ref target, value, seen);
            if (previous == seen) { return; }
            seen = previous;
        }
    }
}
