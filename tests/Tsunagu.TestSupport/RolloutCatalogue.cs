using System.Net.Http.Headers;
using System.Text.Json;
using Tsunagu.Cli.Factory;
using Tsunagu.Demo;
using Tsunagu.Server.Apis;
using Tsunagu.Server.Catalogue;
using Tsunagu.Server.Data;

namespace Tsunagu.IntegrationTests;

/// <summary>The catalogue a rollout test moves units through: pattern 2 (the demo's) to pattern 3.</summary>
public static class RolloutCatalogue
{
    private static async Task<T> Call<T>(OperatorClient client, HttpMethod method, string path, object? body = null) =>
        JsonSerializer.Deserialize<T>(body is null ? await client.SendAsync(method, path, null, CancellationToken.None)
            : await client.SendJsonAsync(method, path, body, CancellationToken.None), JsonSerializerOptions.Web)!;

    /// <summary>Pattern 3 (vcp 2.0.0) verified, with an update program 2 -> 3 of the importance given (5: now).</summary>
    public static async Task AddPattern3Async(TestServer server, OperatorClient client, int importance = 5)
    {
        await Call<SoftwareRow>(client, HttpMethod.Post, "/api/v1/software", new SoftwareRequest("vcp", "2.0.0", "vcp", "r1", null));
        var apps = new Dictionary<string, string>(DemoCatalogue.Pattern2Applications) { ["vcp"] = "2.0.0" };
        await Call<PatternView>(client, HttpMethod.Post, "/api/v1/patterns", new NewPattern("pattern-3", "vcp 2", DemoCatalogue.HardwareVersion, DemoCatalogue.OsVersion, apps));
        await Call<PatternView>(client, HttpMethod.Post, "/api/v1/patterns/pattern-3/verify");
        var body = new ByteArrayContent(DemoCatalogue.BuildBundle("p2-to-p3", 2, DemoCatalogue.Pattern2, "pattern-3", new Dictionary<string, string> { ["vcp"] = "2.0.0" },
            server.ReleaseKey, DateTimeOffset.UtcNow));
        body.Headers.ContentType = new MediaTypeHeaderValue("application/octet-stream");
        var artifact = JsonSerializer.Deserialize<ArtifactView>(await client.SendAsync(HttpMethod.Post, "/api/v1/artifacts", body, CancellationToken.None), JsonSerializerOptions.Web)!;
        await Call<UpdateProgramRow>(client, HttpMethod.Post, "/api/v1/update-programs", new NewUpdateProgram("p2-to-p3", DemoCatalogue.Pattern2, "pattern-3", importance, 1, artifact.Sha256));
    }

    /// <summary>The way back, pattern 3 -> pattern 2 (a newer bundle carrying the old vcp), of importance 5.</summary>
    public static async Task AddWayBackAsync(TestServer server, OperatorClient client)
    {
        using var back = new ByteArrayContent(DemoCatalogue.BuildBundle("p3-to-p2", 3, "pattern-3", DemoCatalogue.Pattern2,
            new Dictionary<string, string> { ["vcp"] = DemoCatalogue.Pattern2Applications["vcp"] }, server.ReleaseKey, DateTimeOffset.UtcNow));
        back.Headers.ContentType = new MediaTypeHeaderValue("application/octet-stream");
        var artifact = JsonSerializer.Deserialize<ArtifactView>(await client.SendAsync(HttpMethod.Post, "/api/v1/artifacts", back, CancellationToken.None), JsonSerializerOptions.Web)!;
        await Call<UpdateProgramRow>(client, HttpMethod.Post, "/api/v1/update-programs", new NewUpdateProgram("p3-to-p2", "pattern-3", DemoCatalogue.Pattern2, 5, 1, artifact.Sha256));
    }
}
