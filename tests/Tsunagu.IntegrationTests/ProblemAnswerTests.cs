using System.Net;
using System.Net.Http.Json;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using Tsunagu.Demo;
using Tsunagu.Protocol;

namespace Tsunagu.IntegrationTests;

/// <summary>
/// What refusals carry: each 503 its own problem type (a forced check that cannot be pushed is not a conflict), and the
/// operator's service configuration writes name the offending field and take documents as large as a subscriber's.
/// </summary>
[NonParallelizable]
public class ProblemAnswerTests
{
    [SetUp]
    public void SetUp() => TestServer.DatabaseKind.Value = "sqlite";

    [TearDown]
    public void TearDown() => TestServer.Configure.Value = null;

    [Test]
    public async Task A_forced_check_without_push_is_503_push_unavailable_and_records_nothing()
    {
        TestServer.Configure.Value = o => o.MqttPort = -1;
        await using var server = await TestServer.StartAsync();
        var mac = (await server.AddUnitsAsync(1))[0].Mac;
        using var http = server.OperatorHttp();
        var before = HostileInputTests.Snapshot(server);
        using var response = await http.PostAsJsonAsync(Routes.ForceCheck, new ForceCheckRequest([mac], null), ProtocolJson.Default.ForceCheckRequest);
        var body = await response.Content.ReadAsStringAsync();
        Assert.That(response.StatusCode, Is.EqualTo(HttpStatusCode.ServiceUnavailable), body);
        Assert.That(response.Content.Headers.ContentType?.MediaType, Is.EqualTo("application/problem+json"), body);
        var problem = JsonNode.Parse(body)!;
        Assert.That(problem["type"]?.GetValue<string>(), Is.EqualTo(ProblemTypes.PushUnavailable), body);
        Assert.That(problem["title"]?.GetValue<string>(), Is.EqualTo("Push unavailable"), body);
        Assert.That(HostileInputTests.Snapshot(server), Is.EqualTo(before), "a refused check records nothing");
    }

    private static IEnumerable<TestCaseData> OperatorWrites()
    {
        yield return new TestCaseData("unit").SetName("{m}(unit)");
        yield return new TestCaseData("named").SetName("{m}(named)");
    }

    [TestCaseSource(nameof(OperatorWrites))]
    public async Task An_operator_service_configuration_is_refused_naming_the_field_up_to_the_subscribers_size_limit(string target)
    {
        await using var server = await TestServer.StartAsync();
        var mac = (await server.AddUnitsAsync(1))[0].Mac;
        using var http = server.OperatorHttp();
        var path = target == "unit" ? $"{Routes.Units}/{mac}/service-config" : $"{Routes.Prefix}/service-configs/lab";
        var s = DemoCatalogue.StandardServices;
        JsonNode Doc(ServiceConfiguration c) => JsonNode.Parse(JsonSerializer.Serialize(c, ProtocolJson.Default.ServiceConfiguration))!;
        var before = HostileInputTests.Snapshot(server);

        async Task Refused(JsonNode document, HttpStatusCode status, string? field)
        {
            // large bodies go with Expect: 100-continue, as real clients send them: a refusal then comes before the body
            using var request = new HttpRequestMessage(HttpMethod.Put, path) { Content = new StringContent(document.ToJsonString(), Encoding.UTF8, "application/json") };
            request.Headers.ExpectContinue = true;
            using var response = await http.SendAsync(request);
            var body = await response.Content.ReadAsStringAsync();
            Assert.That(response.StatusCode, Is.EqualTo(status), body.Length > 400 ? body[..400] : body);
            Assert.That(response.Content.Headers.ContentType?.MediaType, Is.EqualTo("application/problem+json"));
            var problem = JsonNode.Parse(body)!;
            if (field is not null)
            {
                Assert.That(problem["field"]?.GetValue<string>(), Is.EqualTo(field), body.Length > 400 ? body[..400] : body);
                Assert.That(problem["detail"]?.GetValue<string>(), Does.StartWith(field + ": "));
            }
            Assert.That(HostileInputTests.Snapshot(server), Is.EqualTo(before), "a refused configuration stores nothing");
        }

        await Refused(Doc(s with { Dhcp = s.Dhcp with { LeaseTime = "12h\ndhcp-script=/tmp/pwn" } }), HttpStatusCode.BadRequest, "dhcp.leaseTime");
        // 2 MB: above the general 1 MB body limit, within the 4 MiB a service configuration may have, so it is read and judged
        await Refused(Doc(s with { Dhcp = s.Dhcp with { LeaseTime = new string('1', 2 * 1024 * 1024) } }), HttpStatusCode.BadRequest, "dhcp.leaseTime");
        await Refused(Doc(s with { Dhcp = s.Dhcp with { LeaseTime = new string('1', 5 * 1024 * 1024) } }), HttpStatusCode.RequestEntityTooLarge, null);
    }
}
