using System.Net.Http.Headers;
using System.Security.Cryptography;
using System.Text.Json;
using Tsunagu.Demo;
using Tsunagu.Server.Apis;
using Tsunagu.Server.Catalogue;
using Tsunagu.Server.Data;

namespace Tsunagu.Cli.Factory;

/// <summary>
/// A new pattern on the demo hardware: the demo's pattern 2 applications with <paramref name="Vcp"/> as the vcp version,
/// reached from <paramref name="From"/> by the update program <paramref name="Program"/> (a bundle of version
/// <paramref name="BundleVersion"/> carrying that vcp) of <paramref name="Importance"/> (5: now).
/// </summary>
public sealed record NextPattern(string From, string To, string Name, string Vcp, string Program, long BundleVersion, int Importance = 5);

/// <summary>Catalogue steps through the operator API (the fleet simulator's rollouts, the rollout tests).</summary>
public static class CatalogueSteps
{
    /// <summary>An operator API call whose answer is a JSON <typeparamref name="T"/> (<paramref name="body"/> null: no body).</summary>
    public static async Task<T> CallAsync<T>(this OperatorClient client, HttpMethod method, string path, object? body, CancellationToken ct) =>
        JsonSerializer.Deserialize<T>(body is null ? await client.SendAsync(method, path, null, ct) : await client.SendJsonAsync(method, path, body, ct), JsonSerializerOptions.Web)
        ?? throw new OperatorApiException($"{method} {path}: an empty answer", 200);

    /// <summary>The vcp version, the pattern (verified) and the signed update program to it, as <paramref name="next"/> says.</summary>
    public static async Task AddPatternAsync(OperatorClient client, NextPattern next, ECDsa releaseKey, CancellationToken ct)
    {
        await client.CallAsync<SoftwareRow>(HttpMethod.Post, "/api/v1/software", new SoftwareRequest("vcp", next.Vcp, "vcp", DemoCatalogue.HardwareVersion, null), ct);
        var apps = new Dictionary<string, string>(DemoCatalogue.Pattern2Applications) { ["vcp"] = next.Vcp };
        await client.CallAsync<PatternView>(HttpMethod.Post, "/api/v1/patterns", new NewPattern(next.To, next.Name, DemoCatalogue.HardwareVersion, DemoCatalogue.OsVersion, apps), ct);
        await client.CallAsync<PatternView>(HttpMethod.Post, $"/api/v1/patterns/{next.To}/verify", null, ct);
        await AddUpdateProgramAsync(client, next.Program, next.From, next.To, next.BundleVersion, new Dictionary<string, string> { ["vcp"] = next.Vcp },
            next.Importance, releaseKey, ct);
    }

    /// <summary>A bundle <paramref name="from"/> -> <paramref name="to"/> carrying <paramref name="applications"/>, signed and uploaded, and its update program.</summary>
    public static async Task AddUpdateProgramAsync(OperatorClient client, string program, string from, string to, long bundleVersion,
        IReadOnlyDictionary<string, string> applications, int importance, ECDsa releaseKey, CancellationToken ct)
    {
        using var bundle = new ByteArrayContent(DemoCatalogue.BuildBundle(program, bundleVersion, from, to, applications, releaseKey, DateTimeOffset.UtcNow));
        bundle.Headers.ContentType = new MediaTypeHeaderValue("application/octet-stream");
        var artifact = JsonSerializer.Deserialize<ArtifactView>(await client.SendAsync(HttpMethod.Post, "/api/v1/artifacts", bundle, ct), JsonSerializerOptions.Web)
            ?? throw new OperatorApiException("POST /api/v1/artifacts: an empty answer", 200);
        await client.CallAsync<UpdateProgramRow>(HttpMethod.Post, "/api/v1/update-programs", new NewUpdateProgram(program, from, to, importance, 1, artifact.Sha256), ct);
    }
}
