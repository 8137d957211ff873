using System.Net;
using Tsunagu.Firmware.Net;
using Tsunagu.Hal;
using Tsunagu.Protocol;

namespace Tsunagu.UnitTests;

public class UnitClientTests
{
    private sealed class Answer(HttpStatusCode status, string body, TimeSpan? retryAfter) : HttpMessageHandler
    {
        protected override Task<HttpResponseMessage> SendAsync(HttpRequestMessage request, CancellationToken cancellationToken)
        {
            var response = new HttpResponseMessage(status) { Content = new StringContent(body, System.Text.Encoding.UTF8, "application/problem+json") };
            if (retryAfter is { } after) { response.Headers.RetryAfter = new System.Net.Http.Headers.RetryConditionHeaderValue(after); }
            return Task.FromResult(response);
        }
    }

    private sealed class Network(HttpMessageHandler handler) : INetworkAccess
    {
        public HttpMessageHandler WrapHandler(HttpMessageHandler inner) => handler;
        public void EnsureRoute() { }
    }

    [TestCase(HttpStatusCode.TooManyRequests, true)]
    [TestCase(HttpStatusCode.ServiceUnavailable, true)]
    [TestCase(HttpStatusCode.BadRequest, false)]
    public void Server_answers_become_typed_errors_carrying_retry_after(HttpStatusCode status, bool transient)
    {
        using var client = new UnitClient(new Network(new Answer(status, """{"type":"urn:tsunagu:problem:overloaded","detail":"busy now"}""", TimeSpan.FromSeconds(7))), ["pin"]);
        var e = Assert.ThrowsAsync<ServerException>(() => client.GetSettingsAsync(new Uri("https://127.0.0.1:9/"), "t", CancellationToken.None));
        Assert.That(e!.IsTransient, Is.EqualTo(transient));
        Assert.That(e.RetryAfter, Is.EqualTo(TimeSpan.FromSeconds(7)));
        Assert.That(e.Message, Does.Contain("busy now").And.Contain(Routes.ProvisioningSettings));
    }

    [Test]
    public void A_refusal_is_recognised_by_its_problem_type()
    {
        using var client = new UnitClient(new Network(new Answer(HttpStatusCode.Unauthorized, $$"""{"type":"{{ProblemTypes.UnitRefused}}"}""", null)), ["pin"]);
        var e = Assert.ThrowsAsync<ServerException>(() => client.GetSettingsAsync(new Uri("https://127.0.0.1:9/"), "t", CancellationToken.None));
        Assert.That((e!.IsRefusal, e.IsTransient, e.IsSessionExpired), Is.EqualTo((true, false, false)));
    }
}
