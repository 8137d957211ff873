using System.Net;
using System.Net.Http.Headers;
using System.Net.Http.Json;
using System.Net.Security;
using System.Security.Cryptography;
using System.Text.Json;
using System.Text.Json.Serialization.Metadata;
using Tsunagu.Firmware.Storage;
using Tsunagu.Hal;
using Tsunagu.Protocol;

namespace Tsunagu.Firmware.Net;

/// <summary>A call to a server failed. <see cref="IsTransient"/>: retrying later may succeed.</summary>
public class ServerException(string message, bool isTransient, HttpStatusCode? status = null, string? problemType = null,
    TimeSpan? retryAfter = null, Exception? inner = null) : Exception(message, inner)
{
    public bool IsTransient { get; } = isTransient;
    public HttpStatusCode? Status { get; } = status;
    public string? ProblemType { get; } = problemType;
    public TimeSpan? RetryAfter { get; } = retryAfter;

    /// <summary>The server refused this unit's identity: it gets nothing.</summary>
    public bool IsRefusal => ProblemType is ProblemTypes.UnitRefused or ProblemTypes.UnknownUnit;

    /// <summary>The session token is no longer accepted: authenticate again.</summary>
    public bool IsSessionExpired => ProblemType is ProblemTypes.InvalidToken;
}

/// <summary>
/// The unit side of the wire contract (docs/protocol.md). Talks only to servers whose certificate matches a
/// pin of the factory trust anchor; every call names the endpoint in its errors.
/// </summary>
public sealed class UnitClient : IDisposable
{
    private readonly HttpClient _http;
    private readonly Connections _connections;

    public UnitClient(INetworkAccess network, IReadOnlyList<string> serverPins, TimeSpan? timeout = null)
    {
        var pins = serverPins.ToArray();
        _connections = new Connections(() => Configured(network, new SocketsHttpHandler
        {
            PooledConnectionLifetime = TimeSpan.FromMinutes(5),
            // a unit talks to its host in short bursts: an idle connection is closed before the server's keep-alive
            // (30 s) ends it, so neither side holds a descriptor for a unit that will not call again for hours
            PooledConnectionIdleTimeout = TimeSpan.FromSeconds(15),
            SslOptions = new SslClientAuthenticationOptions
            {
                RemoteCertificateValidationCallback = TrustAnchor.Validator(pins),
            },
        }));
        _http = new HttpClient(network.WrapHandler(_connections)) { Timeout = timeout ?? TimeSpan.FromSeconds(30) };
    }

    private static SocketsHttpHandler Configured(INetworkAccess network, SocketsHttpHandler handler)
    {
        network.ConfigureSockets(handler);
        return handler;
    }

    /// <summary>How many times <see cref="DropConnections"/> has closed the pool (for tests and messages).</summary>
    public int ConnectionsDropped => _connections.Dropped;

    /// <summary>
    /// Closes every pooled connection; the next request opens a new one. For a new WAN session: a connection opened
    /// over the previous one (the provisional PPPoE session, a line that was redialled) is bound to an address the unit
    /// no longer has, so nothing it sends is ever answered, and a request on it would wait for the whole timeout. A
    /// request still waiting for its answer's headers on the old pool (the push listener's renewal runs beside the
    /// supervisor's states) ends at once with a transient <see cref="ServerException"/>, as a network fault, and is
    /// retried by its caller; so does one whose answer's body is still arriving (a bundle download, a configuration):
    /// its next read, or the one waiting, ends with the same transient error instead of waiting for its timeout.
    /// </summary>
    public void DropConnections() => _connections.Drop();

    /// <summary>The socket handler, replaced by a new one (an empty pool) on <see cref="Drop"/>.</summary>
    private sealed class Connections(Func<SocketsHttpHandler> create) : HttpMessageHandler
    {
        private readonly Lock _gate = new();
        private HttpMessageInvoker _current = new(create(), disposeHandler: true);
        // cancelled when its pool is dropped: disposing a handler does not end the requests waiting on its connections
        private CancellationTokenSource _generation = new();
        private int _dropped;
        private bool _disposed;

        public int Dropped { get { lock (_gate) { return _dropped; } } }

        public void Drop()
        {
            HttpMessageInvoker old;
            CancellationTokenSource oldGeneration;
            lock (_gate)
            {
                if (_disposed) { return; }
                (old, oldGeneration) = (_current, _generation);
                _current = new HttpMessageInvoker(create(), disposeHandler: true);
                _generation = new CancellationTokenSource();
                _dropped++;
            }
            // not disposed: a request that read its token just before the drop still links to it
            oldGeneration.Cancel();
            old.Dispose();
        }

        protected override async Task<HttpResponseMessage> SendAsync(HttpRequestMessage request, CancellationToken cancellationToken)
        {
            HttpMessageInvoker current;
            CancellationToken dropped;
            lock (_gate) { (current, dropped) = (_current, _generation.Token); }
            using var linked = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken, dropped);
            HttpResponseMessage response;
            try
            {
                response = await current.SendAsync(request, linked.Token);
            }
            catch (Exception e) when (DroppableStream.CutByDrop(dropped, e, cancellationToken))
            {
                throw new HttpRequestException($"{Cut()} while this request was on it", e);
            }
            // the body is read after this returns (by HttpClient for a buffered answer, or by the caller's stream): its
            // reads are tied to the same pool
            response.Content = new DroppableContent(response.Content, dropped, Cut, request.Method, request.RequestUri);
            return response;
        }

        /// <summary>What ended the requests and bodies of a cancelled generation: a drop, or the client's disposal.</summary>
        private string Cut()
        {
            lock (_gate) { return _disposed ? "the client was disposed" : "the connection pool was closed for a new WAN session"; }
        }

        protected override void Dispose(bool disposing)
        {
            if (disposing)
            {
                lock (_gate) { _disposed = true; }
                _generation.Cancel();
                _current.Dispose();
                _generation.Dispose();
            }
            base.Dispose(disposing);
        }
    }

    /// <summary>
    /// A response's content whose body reads end, as a transient <see cref="ServerException"/>, once the pool it came
    /// from is dropped (<see cref="DropConnections"/>): a read waiting then is cancelled, and so is every read after.
    /// </summary>
    private sealed class DroppableContent : HttpContent
    {
        private readonly HttpContent _inner;
        private readonly CancellationToken _dropped;
        private readonly Func<string> _cut;
        private readonly HttpMethod _method;
        private readonly Uri? _uri;

        public DroppableContent(HttpContent inner, CancellationToken dropped, Func<string> cut, HttpMethod method, Uri? uri)
        {
            (_inner, _dropped, _cut, _method, _uri) = (inner, dropped, cut, method, uri);
            foreach (var (name, values) in inner.Headers) { Headers.TryAddWithoutValidation(name, values); }
        }

        protected override Task SerializeToStreamAsync(Stream stream, TransportContext? context) => SerializeToStreamAsync(stream, context, CancellationToken.None);

        protected override async Task SerializeToStreamAsync(Stream stream, TransportContext? context, CancellationToken cancellationToken)
        {
            await using var body = await CreateContentReadStreamAsync(cancellationToken);
            await body.CopyToAsync(stream, cancellationToken);
        }

        protected override Task<Stream> CreateContentReadStreamAsync() => CreateContentReadStreamAsync(CancellationToken.None);

        protected override async Task<Stream> CreateContentReadStreamAsync(CancellationToken cancellationToken) =>
            new DroppableStream(await _inner.ReadAsStreamAsync(cancellationToken), _dropped, _cut, _method, _uri);

        protected override bool TryComputeLength(out long length)
        {
            length = _inner.Headers.ContentLength ?? 0;
            return _inner.Headers.ContentLength is not null;
        }

        protected override void Dispose(bool disposing)
        {
            if (disposing) { _inner.Dispose(); }
            base.Dispose(disposing);
        }
    }

    /// <summary>
    /// The body stream of a <see cref="DroppableContent"/>. One registration on the pool's generation per stream: a drop
    /// disposes the inner stream, which ends its connection and so a read waiting on it, and that read (or any after) ends
    /// with a transient <see cref="ServerException"/>; the inner stream is disposed once, by the drop or by this stream.
    /// </summary>
    private sealed class DroppableStream : ForwardOnlyStream
    {
        private readonly Stream _inner;
        private readonly CancellationToken _dropped;
        private readonly Func<string> _cut;
        private readonly HttpMethod _method;
        private readonly Uri? _uri;
        private readonly CancellationTokenRegistration _registration;
        private int _innerDisposed;

        public DroppableStream(Stream inner, CancellationToken dropped, Func<string> cut, HttpMethod method, Uri? uri)
        {
            (_inner, _dropped, _cut, _method, _uri) = (inner, dropped, cut, method, uri);
            _registration = dropped.UnsafeRegister(static s => ((DroppableStream)s!).DisposeInner(), this);
        }

        public override int Read(Span<byte> buffer)
        {
            if (_dropped.IsCancellationRequested) { throw Dropped(null); }
            try
            {
                return _inner.Read(buffer);
            }
            catch (Exception e) when (CutByDrop(e, CancellationToken.None))
            {
                throw Dropped(e);
            }
        }

        public override async ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken cancellationToken = default)
        {
            if (_dropped.IsCancellationRequested) { throw Dropped(null); }
            try
            {
                return await _inner.ReadAsync(buffer, cancellationToken);
            }
            catch (Exception e) when (CutByDrop(e, cancellationToken))
            {
                throw Dropped(e);
            }
        }

        /// <summary>Did the drop end this read (and not the caller's own cancellation)?</summary>
        private bool CutByDrop(Exception e, CancellationToken cancellationToken) => CutByDrop(_dropped, e, cancellationToken);

        /// <summary>
        /// Did the drop of the pool behind <paramref name="dropped"/> end a request or a body read with <paramref name="e"/>
        /// (and not the caller's own cancellation)?
        /// </summary>
        public static bool CutByDrop(CancellationToken dropped, Exception e, CancellationToken cancellationToken) =>
            dropped.IsCancellationRequested && !cancellationToken.IsCancellationRequested
            && e is OperationCanceledException or ObjectDisposedException or HttpRequestException or IOException;

        private ServerException Dropped(Exception? inner) =>
            new($"{_method} {_uri}: {_cut()} while the answer's body was arriving", isTransient: true, inner: inner);

        private bool ClaimInner() => Interlocked.Exchange(ref _innerDisposed, 1) == 0;

        private void DisposeInner()
        {
            if (ClaimInner()) { _inner.Dispose(); }
        }

        protected override void Dispose(bool disposing)
        {
            if (disposing)
            {
                _registration.Dispose();
                DisposeInner();
            }
            base.Dispose(disposing);
        }

        public override async ValueTask DisposeAsync()
        {
            await _registration.DisposeAsync();
            if (ClaimInner()) { await _inner.DisposeAsync(); }
            await base.DisposeAsync();
        }
    }

    public async Task<SessionResponse> AuthenticateAsync(Uri server, string purpose, FactoryIdentity identity, byte[] secret, CancellationToken ct)
    {
        var (challengePath, sessionPath) = purpose == ProofPurpose.Provisional
            ? (Routes.ProvisioningChallenge, Routes.ProvisioningSession)
            : (Routes.HostChallenge, Routes.HostSession);
        var challenge = await PostAsync(server, challengePath, null, new ChallengeRequest(identity.Mac),
            ProtocolJson.Default.ChallengeRequest, ProtocolJson.Default.ChallengeResponse, ct);
        var proof = UnitCredentials.ComputeProof(secret, purpose, identity.Mac, challenge.ChallengeId, challenge.Nonce);
        return await PostAsync(server, sessionPath, null, new SessionRequest(identity.Mac, challenge.ChallengeId, proof),
            ProtocolJson.Default.SessionRequest, ProtocolJson.Default.SessionResponse, ct);
    }

    public Task<UnitSettings> GetSettingsAsync(Uri server, string token, CancellationToken ct) =>
        GetAsync(server, Routes.ProvisioningSettings, token, ProtocolJson.Default.UnitSettings, ct);

    public Task<VersionCheckResponse> VersionCheckAsync(Uri host, string token, VersionCheckRequest request, CancellationToken ct) =>
        PostAsync(host, Routes.VersionCheck, token, request, ProtocolJson.Default.VersionCheckRequest, ProtocolJson.Default.VersionCheckResponse, ct);

    public Task<UpdateReportAck> ReportUpdateAsync(Uri host, string token, UpdateReport report, CancellationToken ct) =>
        PostAsync(host, Routes.UpdateReport, token, report, ProtocolJson.Default.UpdateReport, ProtocolJson.Default.UpdateReportAck, ct);

    public Task<ServiceConfigResponse> GetServiceConfigAsync(Uri host, string token, CancellationToken ct) =>
        GetAsync(host, Routes.ServiceConfig, token, ProtocolJson.Default.ServiceConfigResponse, ct);

    public Task<ServiceConfigAck> AckServiceConfigAsync(Uri host, string token, ServiceConfigAck ack, CancellationToken ct) =>
        PostAsync(host, Routes.ServiceConfigAck, token, ack, ProtocolJson.Default.ServiceConfigAck, ProtocolJson.Default.ServiceConfigAck, ct);

    public Task<MediaCheckResponse> CheckMediumAsync(Uri host, string token, string digest, CancellationToken ct) =>
        PostAsync(host, Routes.MediaCheck, token, new MediaCheckRequest(digest), ProtocolJson.Default.MediaCheckRequest, ProtocolJson.Default.MediaCheckResponse, ct);

    public Task<ReadyAck> ReportReadyAsync(Uri host, string token, ReadyReport report, CancellationToken ct) =>
        PostAsync(host, Routes.Ready, token, report, ProtocolJson.Default.ReadyReport, ProtocolJson.Default.ReadyAck, ct);

    /// <summary>A periodic check in one request, proven by the nonce of the host's previous answer (no token).</summary>
    public Task<SteadyCheckResponse> SteadyCheckAsync(Uri host, SteadyCheckRequest request, CancellationToken ct) =>
        PostAsync(host, Routes.SteadyCheck, null, request, ProtocolJson.Default.SteadyCheckRequest, ProtocolJson.Default.SteadyCheckResponse, ct);

    /// <summary>
    /// Streams an artifact into <paramref name="destination"/>, hashing as it goes and refusing more than
    /// <paramref name="maxLength"/> bytes (none past it is written). Returns the lower-case hex SHA-256 and the
    /// length read. The next network read overlaps hashing and writing the chunk before it (<see cref="OverlappedCopy"/>).
    /// </summary>
    public async Task<(string Sha256, long Length)> DownloadAsync(Uri host, string relativeUrl, string token, Stream destination,
        long maxLength, CancellationToken ct)
    {
        var uri = new Uri(host, relativeUrl);
        using var request = new HttpRequestMessage(HttpMethod.Get, uri);
        request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", token);
        using var response = await SendAsync(request, HttpCompletionOption.ResponseHeadersRead, ct);
        await EnsureSuccessAsync(response, uri, ct);
        await using var body = await response.Content.ReadAsStreamAsync(ct);
        using var hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        var writeback = new WritebackPacer(destination);
        var total = await OverlappedCopy.CopyAsync(body, maxLength, async (chunk, cancel) =>
        {
            hash.AppendData(chunk.Span);
            await destination.WriteAsync(chunk, cancel);
            await writeback.WroteAsync(chunk.Length, cancel);
        }, ct);
        if (total == maxLength && await body.ReadAsync(new byte[1], ct) > 0)
        {
            throw new ServerException($"{uri}: artifact is longer than the declared {maxLength} bytes", isTransient: false);
        }
        return (Convert.ToHexStringLower(hash.GetHashAndReset()), total);
    }

    /// <summary>
    /// Opens bytes [<paramref name="from"/>, <paramref name="toExclusive"/>) of an artifact with a range request.
    /// Returns the body and the offset it really starts at: <paramref name="from"/> for 206, 0 when the server
    /// ignored the range and sent the whole file (200).
    /// </summary>
    public async Task<(Stream Body, long Start)> OpenRangeAsync(Uri host, string relativeUrl, string token, long from, long toExclusive, CancellationToken ct)
    {
        var uri = new Uri(host, relativeUrl);
        using var request = new HttpRequestMessage(HttpMethod.Get, uri);
        request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", token);
        request.Headers.Range = new RangeHeaderValue(from, toExclusive - 1);
        HttpResponseMessage? response = null;
        try
        {
            response = await SendAsync(request, HttpCompletionOption.ResponseHeadersRead, ct);
            await EnsureSuccessAsync(response, uri, ct);
            long start = 0;
            if (response.StatusCode == HttpStatusCode.PartialContent)
            {
                start = response.Content.Headers.ContentRange?.From
                        ?? throw new ServerException($"{uri}: 206 without a Content-Range", isTransient: true);
                if (start != from)
                {
                    throw new ServerException($"{uri}: asked for bytes from {from}, the server sent from {start}", isTransient: true);
                }
            }
            var body = await response.Content.ReadAsStreamAsync(ct);
            var owned = response;
            response = null;
            return (new OwningStream(body, owned), start);
        }
        finally
        {
            response?.Dispose();
        }
    }

    /// <summary>GET /healthz: is the host reachable over the pinned TLS session? Throws <see cref="ServerException"/> when not.</summary>
    public async Task PingAsync(Uri host, CancellationToken ct)
    {
        var uri = new Uri(host, Routes.Health);
        using var request = new HttpRequestMessage(HttpMethod.Get, uri);
        using var response = await SendAsync(request, HttpCompletionOption.ResponseContentRead, ct);
        await EnsureSuccessAsync(response, uri, ct);
    }

    /// <summary>A response body that disposes its response with it.</summary>
    private sealed class OwningStream(Stream inner, HttpResponseMessage response) : ForwardOnlyStream
    {
        public override int Read(Span<byte> buffer) => inner.Read(buffer);
        public override ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken cancellationToken = default) => inner.ReadAsync(buffer, cancellationToken);

        protected override void Dispose(bool disposing)
        {
            if (disposing)
            {
                inner.Dispose();
                response.Dispose();
            }
            base.Dispose(disposing);
        }
    }

    private async Task<TResponse> GetAsync<TResponse>(Uri server, string path, string token, JsonTypeInfo<TResponse> responseType, CancellationToken ct)
    {
        var uri = new Uri(server, path);
        using var request = new HttpRequestMessage(HttpMethod.Get, uri);
        request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", token);
        using var response = await SendAsync(request, HttpCompletionOption.ResponseContentRead, ct);
        return await ReadAsync(response, uri, responseType, ct);
    }

    private async Task<TResponse> PostAsync<TRequest, TResponse>(Uri server, string path, string? token, TRequest body,
        JsonTypeInfo<TRequest> requestType, JsonTypeInfo<TResponse> responseType, CancellationToken ct)
    {
        var uri = new Uri(server, path);
        using var request = new HttpRequestMessage(HttpMethod.Post, uri) { Content = JsonContent.Create(body, requestType) };
        if (token is not null)
        {
            request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", token);
        }
        using var response = await SendAsync(request, HttpCompletionOption.ResponseContentRead, ct);
        return await ReadAsync(response, uri, responseType, ct);
    }

    private async Task<HttpResponseMessage> SendAsync(HttpRequestMessage request, HttpCompletionOption completion, CancellationToken ct)
    {
        try
        {
            return await _http.SendAsync(request, completion, ct);
        }
        catch (HttpRequestException e)
        {
            throw new ServerException($"{request.Method} {request.RequestUri}: server unreachable: {e.Message}", isTransient: true, inner: e);
        }
        catch (TaskCanceledException e) when (!ct.IsCancellationRequested)
        {
            throw new ServerException($"{request.Method} {request.RequestUri}: timed out", isTransient: true, inner: e);
        }
    }

    private static async Task<T> ReadAsync<T>(HttpResponseMessage response, Uri uri, JsonTypeInfo<T> type, CancellationToken ct)
    {
        await EnsureSuccessAsync(response, uri, ct);
        try
        {
            return await response.Content.ReadFromJsonAsync(type, ct)
                   ?? throw new ServerException($"{uri}: empty response body", isTransient: true);
        }
        catch (JsonException e)
        {
            throw new ServerException($"{uri}: response is not valid JSON: {e.Message}", isTransient: true, inner: e);
        }
    }

    private static async Task EnsureSuccessAsync(HttpResponseMessage response, Uri uri, CancellationToken ct)
    {
        if (response.IsSuccessStatusCode)
        {
            return;
        }
        ProblemBody? problem = null;
        try
        {
            problem = await response.Content.ReadFromJsonAsync(ProtocolJson.Default.ProblemBody, ct);
        }
        catch (Exception e) when (e is JsonException or NotSupportedException or InvalidOperationException)
        {
            // not a problem document: the status code alone describes the failure
        }
        var status = response.StatusCode;
        var transient = status is HttpStatusCode.TooManyRequests or HttpStatusCode.RequestTimeout || (int)status >= 500;
        var retryAfter = response.Headers.RetryAfter?.Delta;
        var detail = problem?.Detail ?? problem?.Title ?? response.ReasonPhrase;
        throw new ServerException($"{uri}: {(int)status} {detail}", transient, status, problem?.Type, retryAfter);
    }

    public void Dispose() => _http.Dispose();
}
