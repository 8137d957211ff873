using System.Net;
using System.Net.Http.Headers;
using System.Net.Http.Json;
using System.Text;
using Tsunagu.Protocol;
using Tsunagu.Server.Apis;
using Tsunagu.Server.Demo;

namespace Tsunagu.IntegrationTests;

/// <summary>Patent 0069-0070 through the API: a change is provisional, pushed, applied by the unit, then final.</summary>
[NonParallelizable]
public class SubscriberChangeTests
{
    [SetUp]
    public void SetUp() => TestServer.DatabaseKind.Value = "sqlite";

    [Test]
    public async Task A_subscriber_change_goes_provisional_applied_final_and_an_operator_can_act_on_their_behalf()
    {
        await using var server = await TestServer.StartAsync();
        using var client = server.Operator();
        await client.SendJsonAsync(HttpMethod.Post, "/api/v1/subscribers", new NewSubscriber("alice", "alice-password"), CancellationToken.None);
        await client.SendAsync(HttpMethod.Post, "/api/v1/units/bulk", new StringContent(
            "mac,serial,isp_method,isp_username,isp_password,subscriber\n02:54:53:00:00:01,A1,pppoe,a@isp,pw,alice\n02:54:53:00:00:02,B1,pppoe,b@isp,pw,bob\n",
            Encoding.UTF8, "text/csv"), CancellationToken.None);
        var mine = await server.Fleet.AddUnitAsync(server.Identity(1), CancellationToken.None);
        server.Fleet.Start(mine);
        await server.WaitReadyAsync(mine);
        await server.WaitForAsync(() => mine.Supervisor.Context.Push?.IsConnected == true, "the unit listening for pushes");

        using var http = server.PinnedHttp();
        var token = (await (await http.PostAsJsonAsync("/api/v1/subscriber/token", new SubscriberLogin("alice", "alice-password"))).Content.ReadFromJsonAsync<TokenResponse>())!;
        http.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", token.Token);

        var view = (await http.GetFromJsonAsync<SubscriberConfigView>($"/api/v1/subscriber/units/{mine.Mac}/service-config"))!;
        Assert.That(view.Revision, Is.EqualTo(1));
        var changed = view.Configuration! with
        {
            Firewall = view.Configuration.Firewall with { PortForwards = [.. view.Configuration.Firewall.PortForwards, new PortForward("udp", 27015, "192.168.10.30", 27015)] },
        };
        var put = await http.PutAsJsonAsync($"/api/v1/subscriber/units/{mine.Mac}/service-config", changed);
        Assert.That(put.StatusCode, Is.EqualTo(HttpStatusCode.OK), await put.Content.ReadAsStringAsync());
        var result = (await put.Content.ReadFromJsonAsync<SubscriberChangeView>())!;
        Assert.That((result.Revision, result.Status, result.PushWarning), Is.EqualTo((2L, "provisional", (string?)null)));
        await server.WaitForAsync(() => server.Store.ListUnitConfigs(mine.Mac).Single(r => r.Revision == 2).Status == "final", "revision 2 final");
        Assert.That(File.ReadAllText(Path.Combine(mine.Hardware.Data.Root, "services", "current", "nftables.nft")), Does.Contain("27015"));
        Assert.That(server.Store.ListUnitConfigs(mine.Mac).Single(r => r.Revision == 2).Origin, Is.EqualTo("subscriber"));

        var invalid = await http.PutAsJsonAsync($"/api/v1/subscriber/units/{mine.Mac}/service-config",
            changed with { Dhcp = changed.Dhcp with { RangeStart = "nonsense" } });
        Assert.That(invalid.StatusCode, Is.EqualTo(HttpStatusCode.BadRequest));
        Assert.That(await invalid.Content.ReadAsStringAsync(), Does.Contain("dhcp.rangeStart"));
        Assert.That(server.Store.ListUnitConfigs(mine.Mac), Has.Count.EqualTo(2), "a refused change is not recorded");
        Assert.That((await http.GetAsync("/api/v1/subscriber/units/02:54:53:00:00:02/service-config")).StatusCode, Is.EqualTo(HttpStatusCode.NotFound), "bob's unit");
        Assert.That((await http.PutAsJsonAsync("/api/v1/subscriber/units/02:54:53:00:00:02/service-config", changed)).StatusCode, Is.EqualTo(HttpStatusCode.NotFound));

        // the operator, on alice's behalf (phone call): a new revision, pushed at once, final once applied
        var onBehalf = changed with { ContentFilter = changed.ContentFilter with { BlockedDomains = [.. changed.ContentFilter.BlockedDomains, "games.example"] } };
        await client.SendJsonAsync(HttpMethod.Put, $"/api/v1/units/{mine.Mac}/service-config", onBehalf, CancellationToken.None);
        await server.WaitForAsync(() => server.Store.ListUnitConfigs(mine.Mac).Single(r => r.Revision == 3).Status == "final", "revision 3 final");
        Assert.That(File.ReadAllText(Path.Combine(mine.Hardware.Data.Root, "services", "current", "dnsmasq.conf")), Does.Contain("games.example"));
        Assert.That(server.Store.ListAudit(10).First(a => a.Action == "unit.service-config").Actor, Is.EqualTo(DemoCatalogue.OperatorName));
    }
}
