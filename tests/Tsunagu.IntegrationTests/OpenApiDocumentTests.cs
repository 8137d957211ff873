using System.Text.Json.Nodes;
using Tsunagu.Protocol;

namespace Tsunagu.IntegrationTests;

/// <summary>
/// The server's OpenAPI document describes what each operation answers: the schema of its success body and the
/// statuses of its problem answers, so that a client generated from it knows the types without reading the code.
/// </summary>
public class OpenApiDocumentTests
{
    [SetUp]
    public void SetUp() => TestServer.DatabaseKind.Value = "sqlite";

    private static JsonNode Responses(JsonNode document, string path, string method) =>
        document["paths"]?[path]?[method]?["responses"] ?? throw new AssertionException($"{method} {path}: not in the document");

    /// <summary>The name of the schema a response's JSON body refers to (its component), or null.</summary>
    private static string? SchemaName(JsonNode document, string path, string method, string status)
    {
        var schema = Responses(document, path, method)[status]?["content"]?["application/json"]?["schema"];
        var reference = schema?["$ref"]?.GetValue<string>() ?? schema?["items"]?["$ref"]?.GetValue<string>();
        return reference?.Split('/')[^1];
    }

    private static bool IsProblem(JsonNode document, string path, string method, string status) =>
        Responses(document, path, method)[status]?["content"]?["application/problem+json"] is not null;

    [Test]
    public async Task Key_operations_name_their_response_types_and_problem_statuses()
    {
        await using var server = await TestServer.StartAsync();
        using var http = server.PinnedHttp();
        var document = JsonNode.Parse(await http.GetStringAsync("/openapi/v1.json"))!;

        var expected = new (string Path, string Method, string Status, string Schema)[]
        {
            (Routes.HostSession, "post", "200", nameof(SessionResponse)),
            (Routes.VersionCheck, "post", "200", nameof(VersionCheckResponse)),
            (Routes.UpdateReport, "post", "200", nameof(UpdateReportAck)),
            (Routes.Ready, "post", "200", nameof(ReadyAck)),
            (Routes.ServiceConfig, "get", "200", nameof(ServiceConfigResponse)),
            (Routes.ProvisioningSettings, "get", "200", nameof(UnitSettings)),
            (Routes.Units, "post", "201", nameof(UnitView)),
            (Routes.Units, "get", "200", nameof(UnitView)),
            (Routes.Units + "/{mac}", "get", "200", nameof(UnitView)),
            (Routes.Units + "/{mac}/service-config", "put", "200", "UnitConfigAssigned"),
            (Routes.ForceCheck, "post", "200", nameof(ForceCheckResponse)),
            (Routes.Prefix + "/subscriber/token", "post", "200", nameof(Tsunagu.Server.Apis.TokenResponse)),
            (Routes.Prefix + "/patterns/{id}", "get", "200", nameof(Tsunagu.Server.Apis.PatternView)),
        };
        var wrong = expected.Where(e => SchemaName(document, e.Path, e.Method, e.Status) != e.Schema)
            .Select(e => $"{e.Method} {e.Path} {e.Status}: {SchemaName(document, e.Path, e.Method, e.Status) ?? "no JSON schema"}, expected {e.Schema}")
            .ToList();

        var problems = new (string Path, string Method, string Status)[]
        {
            (Routes.Units + "/{mac}", "get", "404"),
            (Routes.Units, "post", "409"),
            (Routes.Units + "/bulk", "post", "413"),
            (Routes.Units + "/{mac}/service-config", "put", "413"),
            (Routes.VersionCheck, "post", "404"),
            (Routes.Prefix + "/patterns", "post", "409"),
            // deletions: 400 for a malformed id, 404 for an absent entry, 409 for one something refers to
            (Routes.Prefix + "/patches/{id}", "delete", "400"),
            (Routes.Prefix + "/patches/{id}", "delete", "404"),
            (Routes.Prefix + "/software/{appId}/{version}", "delete", "400"),
            (Routes.Prefix + "/software/{appId}/{version}", "delete", "409"),
            (Routes.Prefix + "/patterns/{id}", "delete", "400"),
            (Routes.Prefix + "/patterns/{id}", "delete", "409"),
        };
        wrong.AddRange(problems.Where(p => !IsProblem(document, p.Path, p.Method, p.Status))
            .Select(p => $"{p.Method} {p.Path}: no {p.Status} problem document"));
        // every operation still lists the refusals every caller can meet
        foreach (var (path, item) in document["paths"]!.AsObject())
        {
            foreach (var (method, operation) in item!.AsObject())
            {
                if (operation?["responses"]?["503"] is null) { wrong.Add($"{method} {path}: no 503"); }
            }
        }
        Assert.That(wrong, Is.Empty);
    }
}
