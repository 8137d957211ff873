using System.Net.Http.Headers;
using System.Net.Http.Json;
using System.Text;
using System.Text.Json.Nodes;
using Tsunagu.Demo;
using Tsunagu.Protocol;
using Tsunagu.Server.Apis;
using Tsunagu.Server.Security;

namespace Tsunagu.IntegrationTests;

/// <summary>
/// Walks the server's own OpenAPI document: every operation, as every kind of caller (operator, subscriber, unit,
/// anonymous), gets generated bad bodies (wrong types, nulls, huge strings, control characters, NaN, deep nesting),
/// bad path and query parameters, and an oversize body. No answer may be a 5xx; every 4xx is a problem document; and a
/// refused request leaves every table of the database as it was.
/// </summary>
[NonParallelizable]
public class OpenApiWalkTests
{
    [SetUp]
    public void SetUp() => TestServer.DatabaseKind.Value = "sqlite";

    [TearDown]
    public void TearDown() => TestServer.Configure.Value = null;

    private static readonly string[] BadScalars = ["null", "123", "-1", "1e308", "\"NaN\"", "\"a\\r\\nb\\u0000c\"", "\"ä€\\ud800\"", "[]", "{}", "true",
        "\"" + new string('x', 50_000) + "\""];

    private static IEnumerable<string> GenericBodies()
    {
        yield return "null";
        yield return "[]";
        yield return "\"x\"";
        yield return "{}";
        yield return "{\"x\":";
        yield return new string('[', 5000) + new string(']', 5000);
        yield return "{\"a\":" + string.Concat(Enumerable.Repeat("{\"a\":", 300)) + "1" + new string('}', 301);
        yield return "NaN";
    }

    /// <summary>The properties of an operation's JSON body schema (resolving a reference), or none.</summary>
    private static List<string> Properties(JsonNode document, JsonNode? schema)
    {
        if (schema?["$ref"]?.GetValue<string>() is { } reference)
        {
            schema = document["components"]?["schemas"]?[reference.Split('/')[^1]];
        }
        return schema?["properties"]?.AsObject().Select(p => p.Key).ToList() ?? [];
    }

    private static string Path(string template, string mac, string variant) =>
        System.Text.RegularExpressions.Regex.Replace(template, "\\{([^}]+)\\}", m => variant == "valid" ? (m.Groups[1].Value == "mac" ? mac : "nope") : variant);

    [Test]
    public async Task Every_operation_refuses_bad_input_as_every_caller_without_a_5xx_and_without_changing_anything()
    {
        TestServer.Configure.Value = o =>
        {
            o.LoginAttemptsPerMinute = 1_000_000; o.PasswordAttemptsPerSourcePerMinute = 1_000_000; o.PasswordAttemptsPerAccountPerMinute = 1_000_000;
            o.AuthAttemptsPerMacPerMinute = 1_000_000;
        };
        await using var server = await TestServer.StartAsync();
        var mac = (await server.AddUnitsAsync(1))[0].Mac;
        using var client = server.Operator();
        await client.SendJsonAsync(HttpMethod.Post, "/api/v1/subscribers", new NewSubscriber("alice", "alice-password"), CancellationToken.None);
        using var http = server.PinnedHttp();
        var subscriberToken = (await (await http.PostAsJsonAsync("/api/v1/subscriber/token", new SubscriberLogin("alice", "alice-password"))).Content.ReadFromJsonAsync<TokenResponse>())!.Token;
        var challenge = (await (await http.PostAsJsonAsync(Routes.HostChallenge, new ChallengeRequest(mac))).Content.ReadFromJsonAsync<ChallengeResponse>())!;
        var proof = UnitCredentials.ComputeProof(UnitCredentials.DeriveUnitSecret(server.UnitKey, mac), ProofPurpose.Host, mac, challenge.ChallengeId, challenge.Nonce);
        var unitToken = (await (await http.PostAsJsonAsync(Routes.HostSession, new SessionRequest(mac, challenge.ChallengeId, proof))).Content.ReadFromJsonAsync<SessionResponse>())!.Token;
        var callers = new Dictionary<string, AuthenticationHeaderValue?>
        {
            ["operator"] = new("Basic", Convert.ToBase64String(Encoding.UTF8.GetBytes($"{DemoCatalogue.OperatorName}:{TestServer.Password}"))),
            ["subscriber"] = new("Bearer", subscriberToken),
            ["unit"] = new("Bearer", unitToken),
            ["anonymous"] = null,
        };
        var document = JsonNode.Parse(await http.GetStringAsync("/openapi/v1.json"))!;
        var failures = new List<string>();
        var sent = 0;
        var refusedAndChecked = 0;

        async Task Probe(string caller, HttpMethod method, string path, string? contentType, string? body)
        {
            var before = method == HttpMethod.Get ? null : HostileInputTests.Snapshot(server);
            using var request = new HttpRequestMessage(method, path);
            request.Headers.Authorization = callers[caller];
            request.Headers.Add(CrossSiteRequests.ClientHeader, "walk");
            if (body is not null) { request.Content = new StringContent(body, Encoding.UTF8, contentType ?? "application/json"); }
            HttpResponseMessage response;
            try
            {
                response = await http.SendAsync(request);
            }
            catch (HttpRequestException e)
            {
                failures.Add($"{caller} {method} {path}: connection failed: {e.Message}");
                return;
            }
            sent++;
            var status = (int)response.StatusCode;
            var what = $"{caller} {method} {path} {(body is null ? "" : body.Length > 60 ? body[..60] + "..." : body)}";
            if (status >= 500)
            {
                failures.Add($"{what}: {status} {await response.Content.ReadAsStringAsync()}");
                return;
            }
            // Kestrel itself refuses a NUL in the path with an empty 400 before the application sees the request
            var refusedByKestrel = status == 400 && path.Contains("%00", StringComparison.Ordinal) && response.Content.Headers.ContentLength == 0;
            if (status >= 400 && !refusedByKestrel)
            {
                if (response.Content.Headers.ContentType?.MediaType != "application/problem+json")
                {
                    failures.Add($"{what}: {status} without a problem document ({response.Content.Headers.ContentType})");
                }
                else if (status == 400 && JsonNode.Parse(await response.Content.ReadAsStringAsync())?["detail"]?.GetValue<string>() is not { Length: > 0 })
                {
                    failures.Add($"{what}: 400 without a detail");
                }
                if (before is not null)
                {
                    refusedAndChecked++;
                    if (HostileInputTests.Snapshot(server) != before) { failures.Add($"{what}: {status} but the database changed"); }
                }
            }
        }

        foreach (var (template, item) in document["paths"]!.AsObject())
        {
            foreach (var (verb, operation) in item!.AsObject())
            {
                var method = new HttpMethod(verb.ToUpperInvariant());
                var content = operation!["requestBody"]?["content"]?.AsObject();
                var contentType = content?.Select(c => c.Key).FirstOrDefault();
                var properties = contentType == "application/json" ? Properties(document, content![contentType]!["schema"]) : [];
                var query = operation["parameters"]?.AsArray().Where(p => p?["in"]?.GetValue<string>() == "query").Select(p => p!["name"]!.GetValue<string>()).ToList() ?? [];
                foreach (var caller in callers.Keys)
                {
                    foreach (var variant in new[] { "valid", "%00", "a%0D%0Ab", new string('x', 3000), "%C3%A4%F0%9F%98%80", "..%2F..%2Fetc" })
                    {
                        var path = Path(template, mac, variant);
                        if (variant != "valid" && path == template) { continue; }
                        await Probe(caller, method, path, contentType, contentType is null ? null : "{}");
                    }
                    foreach (var name in query)
                    {
                        foreach (var value in new[] { "%00%0A", "NaN", "-99999999999999999999", new string('9', 400) })
                        {
                            await Probe(caller, method, $"{Path(template, mac, "valid")}?{name}={value}", contentType, contentType is null ? null : "{}");
                        }
                    }
                    if (contentType is null) { continue; }
                    var target = Path(template, mac, "valid");
                    if (contentType == "text/csv")
                    {
                        foreach (var csv in new[] { "", "\"unclosed", "mac,serial\n\u0000,\u0001\n", "mac,serial\n02:54:53:00:00:01,a\r\nb\n", "a,b,c\n" + new string(',', 10_000) })
                        {
                            await Probe(caller, method, target, contentType, csv);
                        }
                        continue;
                    }
                    if (contentType != "application/json") { continue; }
                    foreach (var body in GenericBodies()) { await Probe(caller, method, target, contentType, body); }
                    if (caller is "operator" or "anonymous")
                    {
                        // oversize: refused on the announced length (413), nothing stored
                        var before = HostileInputTests.Snapshot(server);
                        var (status, text) = await HostileInputTests.Announce(server, target, contentType, callers[caller]?.ToString() ?? "None x", "{\"a\":\""u8.ToArray(), 2 * 1024 * 1024);
                        sent++;
                        if (status != 413 && status != 401) { failures.Add($"{caller} {method} {target} oversize: {status} {text}"); }
                        if (HostileInputTests.Snapshot(server) != before) { failures.Add($"{caller} {method} {target} oversize: the database changed"); }
                    }
                    foreach (var property in properties)
                    {
                        foreach (var bad in BadScalars)
                        {
                            var others = string.Join(",", properties.Where(p => p != property).Select(p => $"\"{p}\":\"x\""));
                            await Probe(caller, method, target, contentType, $"{{\"{property}\":{bad}{(others.Length > 0 ? "," + others : "")}}}");
                        }
                    }
                }
            }
        }
        Assert.That(failures, Is.Empty, $"{failures.Count} of {sent} requests:\n" + string.Join("\n", failures.Take(40)));
        Assert.That(sent, Is.GreaterThan(1000), "the walk reached the operations");
        Assert.That(refusedAndChecked, Is.GreaterThan(500), "refused writes were compared with the database");
    }
}
