using System.Net;
using System.Net.Http.Headers;
using System.Net.Http.Json;
using System.Text;
using System.Text.Json;
using Microsoft.Extensions.DependencyInjection;
using Tsunagu.Demo;
using Tsunagu.Server.Apis;
using Tsunagu.Server.Data;

namespace Tsunagu.IntegrationTests;

/// <summary>
/// The subscriber's cancel of the host's retries of a failed change (patent 0070; Subscribers/ConfigRetries.cs) through
/// the API: it stops further attempts and is audited; with nothing to cancel, for the provider's change, or for another's
/// unit, it is refused and writes nothing.
/// </summary>
[NonParallelizable]
public class SubscriberRetryCancelTests
{
    [SetUp]
    public void SetUp() => TestServer.DatabaseKind.Value = "sqlite";

    [TearDown]
    public void TearDown() => TestServer.Configure.Value = null;

    [Test]
    public async Task A_cancel_stops_the_retries_of_that_unit_only_and_a_cancel_with_nothing_to_cancel_changes_nothing()
    {
        TestServer.Configure.Value = o => o.ConfigRetryBackoffSeconds = 0;
        await using var server = await TestServer.StartAsync();
        using var client = server.Operator();
        await client.SendJsonAsync(HttpMethod.Post, "/api/v1/subscribers", new NewSubscriber("alice", "alice-password"), CancellationToken.None);
        await client.SendAsync(HttpMethod.Post, "/api/v1/units/bulk", new StringContent(
            "mac,serial,isp_method,isp_username,isp_password,subscriber\n02:54:53:00:00:01,A1,pppoe,a@isp,pw,alice\n02:54:53:00:00:02,A2,pppoe,b@isp,pw,alice\n02:54:53:00:00:03,B1,pppoe,c@isp,pw,bob\n02:54:53:00:00:04,A4,pppoe,d@isp,pw,alice\n",
            Encoding.UTF8, "text/csv"), CancellationToken.None);
        string[] macs = ["02:54:53:00:00:01", "02:54:53:00:00:02"];
        // each unit's newest revision failed (the unit refused it), attempt 1 of 3
        foreach (var mac in macs)
        {
            var revision = await server.Store.ServiceConfigs.AddUnitConfigAsync(mac, DemoCatalogue.StandardServices, "subscriber");
            Assert.That(await server.Store.ServiceConfigs.AckUnitConfigAsync(mac, revision, false, "dnsmasq refused it"), Is.True);
        }

        // the provider's change to alice's fourth unit failed too: it is not the subscriber's to cancel
        const string providers = "02:54:53:00:00:04";
        var operatorRevision = await server.Store.ServiceConfigs.AddUnitConfigAsync(providers, DemoCatalogue.StandardServices, "operator");
        Assert.That(await server.Store.ServiceConfigs.AckUnitConfigAsync(providers, operatorRevision, false, "dnsmasq refused it"), Is.True);

        using var http = server.PinnedHttp();
        var token = (await (await http.PostAsJsonAsync("/api/v1/subscriber/token", new SubscriberLogin("alice", "alice-password"))).Content.ReadFromJsonAsync<TokenResponse>())!;
        http.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", token.Token);
        http.DefaultRequestHeaders.Add("X-Tsunagu-Client", "test");

        var failed = (await server.Store.ServiceConfigs.LatestUnitConfigAsync(macs[0]))!;
        using (var cancel = await http.PostAsync($"/api/v1/subscriber/units/{macs[0]}/service-config/cancel-retry", null))
        {
            Assert.That(cancel.StatusCode, Is.EqualTo(HttpStatusCode.OK), await cancel.Content.ReadAsStringAsync());
            Assert.That(await cancel.Content.ReadFromJsonAsync<RetryCancelled>(), Is.EqualTo(new RetryCancelled(macs[0], failed.Revision)));
        }
        var entry = (await server.Store.ListAuditAsync(20)).Single(a => a.Action == "unit.service-config.retry-cancel");
        Assert.That((entry.Actor, entry.Target), Is.EqualTo(("subscriber:alice", (string?)macs[0])));
        Assert.That(entry.Detail, Does.Contain($"revision {failed.Revision}"));

        // the ready report that would retry: nothing for the cancelled unit, the retry for the other
        var retries = server.App.Services.GetRequiredService<Tsunagu.Server.Subscribers.ConfigRetries>();
        Assert.That(await retries.AfterReadyAsync(macs[0], CancellationToken.None), Is.Null, "cancelled: no further attempt");
        Assert.That(await retries.AfterReadyAsync(macs[1], CancellationToken.None), Is.EqualTo(await server.Store.ServiceConfigs.LatestUnitConfigRevisionAsync(macs[1])), "not cancelled: retried");
        Assert.That((await server.Store.ServiceConfigs.LatestUnitConfigAsync(macs[0]))!.Revision, Is.EqualTo(failed.Revision));
        Assert.That((await server.Store.ServiceConfigs.LatestUnitConfigAsync(macs[0]))!.RetryCancelledBy, Is.EqualTo("subscriber:alice"));

        // who stopped the retries, and when, is in both revision lists: the operator's and the subscriber's
        var listed = JsonSerializer.Deserialize<List<UnitConfigRevisionView>>(
            await client.SendAsync(HttpMethod.Get, $"/api/v1/units/{macs[0]}/service-config", null, CancellationToken.None), JsonSerializerOptions.Web)!;
        var cancelled = listed.Single(r => r.Revision == failed.Revision);
        Assert.That((cancelled.RetryCancelledBy, cancelled.RetryCancelledAt), Is.EqualTo(("subscriber:alice", (await server.Store.ServiceConfigs.LatestUnitConfigAsync(macs[0]))!.RetryCancelledAt)));
        Assert.That(cancelled.RetryCancelledAt, Is.Not.Null);
        Assert.That(listed.Where(r => r.Revision != failed.Revision).Select(r => r.RetryCancelledBy), Is.All.Null, "only the cancelled revision names a canceller");
        var own = (await http.GetFromJsonAsync<SubscriberConfigView>($"/api/v1/subscriber/units/{macs[0]}/service-config"))!;
        Assert.That(own.Revisions.Single(r => r.Revision == failed.Revision).RetryCancelledBy, Is.EqualTo("subscriber:alice"));
        var other = JsonSerializer.Deserialize<List<UnitConfigRevisionView>>(
            await client.SendAsync(HttpMethod.Get, $"/api/v1/units/{macs[1]}/service-config", null, CancellationToken.None), JsonSerializerOptions.Web)!;
        Assert.That(other.Select(r => r.RetryCancelledBy), Is.All.Null, "nothing cancelled on the other unit");

        // refused, writing nothing: again (cancelled already), another's unit, no MAC
        foreach (var (path, status) in new[]
                 {
                     ($"/api/v1/subscriber/units/{macs[0]}/service-config/cancel-retry", HttpStatusCode.Conflict),
                     ("/api/v1/subscriber/units/02:54:53:00:00:03/service-config/cancel-retry", HttpStatusCode.NotFound),
                     ("/api/v1/subscriber/units/not-a-mac/service-config/cancel-retry", HttpStatusCode.NotFound),
                     ($"/api/v1/subscriber/units/{providers}/service-config/cancel-retry", HttpStatusCode.Conflict),
                 })
        {
            var before = HostileInputTests.Snapshot(server);
            using var refused = await http.PostAsync(path, null);
            Assert.That(refused.StatusCode, Is.EqualTo(status), path);
            Assert.That(HostileInputTests.Snapshot(server), Is.EqualTo(before), $"{path}: nothing written");
        }
        // the retry in flight (provisional, attempt 2) can be cancelled too: no attempt after it
        using (var inFlight = await http.PostAsync($"/api/v1/subscriber/units/{macs[1]}/service-config/cancel-retry", null))
        {
            Assert.That(inFlight.StatusCode, Is.EqualTo(HttpStatusCode.OK));
        }
        var retry = (await server.Store.ServiceConfigs.LatestUnitConfigAsync(macs[1]))!;
        Assert.That((retry.Attempt, retry.Status), Is.EqualTo((2L, ConfigStatus.Provisional)));
        Assert.That(await server.Store.ServiceConfigs.AckUnitConfigAsync(macs[1], retry.Revision, false, "refused again"), Is.True);
        Assert.That(await retries.AfterReadyAsync(macs[1], CancellationToken.None), Is.Null, "the failed retry is not retried again");

        // the canceller is text wherever it is shown: markup in a stored canceller (a record from elsewhere) is escaped
        using (var c = server.Store.Database.Open())
        {
            Dapper.SqlMapper.Execute(c, "UPDATE unit_configs SET retry_cancelled_by = @by WHERE mac = @mac AND revision = @revision",
                new { by = "subscriber:<img src=x onerror=alert(1)>", mac = macs[0], revision = failed.Revision });
        }
        using var console = await RoleTests.ConsoleSession(server, DemoCatalogue.OperatorName, TestServer.Password);
        var html = await console.GetStringAsync($"/console/units/{macs[0]}");
        Assert.That(html, Does.Contain("cancelled by subscriber:&lt;img src"));
        Assert.That(html, Does.Not.Contain("<img src=x"));
    }
}
