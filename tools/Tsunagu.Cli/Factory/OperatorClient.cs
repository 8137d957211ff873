using System.Net.Http.Headers;
using System.Net.Http.Json;
using System.Net.Security;
using System.Security.Cryptography.X509Certificates;
using System.Text;
using System.Text.Json;
using Tsunagu.Protocol;

namespace Tsunagu.Cli.Factory;

/// <summary>An operator API call failed; the message carries the server's problem detail.</summary>
public sealed class OperatorApiException(string message, int status) : Exception(message)
{
    public int Status { get; } = status;

    /// <summary>The response body, for callers that read structured errors (bulk registration).</summary>
    public string? Body { get; init; }
}

/// <summary>The operator API over HTTPS, trusting only the server certificate whose pin is given.</summary>
public sealed class OperatorClient : IDisposable
{
    private readonly HttpClient _http;

    public OperatorClient(Uri server, string user, string password, IReadOnlyCollection<string> serverPins)
    {
        var handler = new SocketsHttpHandler
        {
            SslOptions = new SslClientAuthenticationOptions
            {
                RemoteCertificateValidationCallback = TrustAnchor.Validator(serverPins),
            },
        };
        _http = new HttpClient(handler) { BaseAddress = server, Timeout = TimeSpan.FromSeconds(60) };
        _http.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Basic",
            Convert.ToBase64String(Encoding.UTF8.GetBytes($"{user}:{password}")));
        // the server refuses state-changing calls a cross-site form could make: this header marks a real client
        _http.DefaultRequestHeaders.Add("X-Tsunagu-Client", "tsunagu-cli");
    }

    /// <summary>Reads the SPKI pin of a PEM certificate file (the server's `tls/server.pem`).</summary>
    public static string PinFromPemFile(string path)
    {
        try
        {
            using var cert = X509Certificate2.CreateFromPem(File.ReadAllText(path));
            return TrustAnchor.PinOf(cert);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or System.Security.Cryptography.CryptographicException or ArgumentException)
        {
            throw new OperatorApiException($"{path}: not a readable PEM certificate: {e.Message}", 0);
        }
    }

    public async Task<UnitView> RegisterAsync(RegisterUnitRequest request, CancellationToken ct)
    {
        using var response = await _http.PostAsJsonAsync(Routes.Units, request, ProtocolJson.Default.RegisterUnitRequest, ct);
        return await ReadAsync(response, ProtocolJson.Default.UnitView, ct);
    }

    /// <summary>The unit registered as <paramref name="mac"/>, or null when the server has none.</summary>
    public async Task<UnitView?> FindUnitAsync(string mac, CancellationToken ct)
    {
        using var response = await _http.GetAsync($"{Routes.Units}/{Uri.EscapeDataString(mac)}", ct);
        return response.StatusCode == System.Net.HttpStatusCode.NotFound ? null : await ReadAsync(response, ProtocolJson.Default.UnitView, ct);
    }

    public async Task<List<UnitView>> ListUnitsAsync(string? pattern, string? state, CancellationToken ct)
    {
        var query = new List<string>();
        if (pattern is not null) { query.Add($"pattern={Uri.EscapeDataString(pattern)}"); }
        if (state is not null) { query.Add($"state={Uri.EscapeDataString(state)}"); }
        using var response = await _http.GetAsync(Routes.Units + (query.Count > 0 ? "?" + string.Join('&', query) : ""), ct);
        return await ReadAsync(response, ProtocolJson.Default.ListUnitView, ct);
    }

    public async Task<ForceCheckResponse> ForceCheckAsync(ForceCheckRequest request, CancellationToken ct)
    {
        using var response = await _http.PostAsJsonAsync(Routes.ForceCheck, request, ProtocolJson.Default.ForceCheckRequest, ct);
        return await ReadAsync(response, ProtocolJson.Default.ForceCheckResponse, ct);
    }

    /// <summary>Any operator API call: returns the response body, or throws with the server's problem detail.</summary>
    public async Task<string> SendAsync(HttpMethod method, string path, HttpContent? content, CancellationToken ct, string? ifMatch = null)
    {
        using var request = new HttpRequestMessage(method, path) { Content = content };
        if (ifMatch is not null) { request.Headers.TryAddWithoutValidation("If-Match", ifMatch); }
        using var response = await _http.SendAsync(request, ct);
        var body = await response.Content.ReadAsStringAsync(ct);
        if (!response.IsSuccessStatusCode)
        {
            ProblemBody? problem = null;
            try { problem = JsonSerializer.Deserialize(body, ProtocolJson.Default.ProblemBody); }
            catch (JsonException) { /* not a problem document: the body itself is the detail */ }
            throw new OperatorApiException($"{method} {path}: {(int)response.StatusCode} {Explain(problem)}{problem?.Detail ?? body}", (int)response.StatusCode) { Body = body };
        }
        return body;
    }

    public Task<string> SendJsonAsync<T>(HttpMethod method, string path, T body, CancellationToken ct, string? ifMatch = null) =>
        SendAsync(method, path, new StringContent(JsonSerializer.Serialize(body, JsonSerializerOptions.Web), Encoding.UTF8, "application/json"), ct, ifMatch);

    private static async Task<T> ReadAsync<T>(HttpResponseMessage response, System.Text.Json.Serialization.Metadata.JsonTypeInfo<T> type, CancellationToken ct)
    {
        if (!response.IsSuccessStatusCode)
        {
            ProblemBody? problem = null;
            try { problem = await response.Content.ReadFromJsonAsync(ProtocolJson.Default.ProblemBody, ct); }
            catch (JsonException) { /* the status line alone describes it */ }
            throw new OperatorApiException($"{response.RequestMessage?.Method} {response.RequestMessage?.RequestUri}: {(int)response.StatusCode} {Explain(problem)}{problem?.Detail ?? problem?.Title ?? response.ReasonPhrase}", (int)response.StatusCode);
        }
        return await response.Content.ReadFromJsonAsync(type, ct) ?? throw new OperatorApiException("empty response", (int)response.StatusCode);
    }

    /// <summary>Words before the server's detail for refusals an operator meets often: a role that may not do it.</summary>
    private static string Explain(ProblemBody? problem) =>
        problem?.Type == ProblemTypes.RoleNotAllowed ? "refused: your operator role does not allow this (an administrator can change roles); " : "";

    public void Dispose() => _http.Dispose();
}
