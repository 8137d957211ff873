using Microsoft.Extensions.DependencyInjection;
using MQTTnet;
using Tsunagu.Server.Units.Lifecycle;

namespace Tsunagu.IntegrationTests;

/// <summary>Decommissioning on a real Mosquitto: the unit's session is dropped and its password refused (dynamic security).</summary>
[NonParallelizable]
public class UnitLifecycleMosquittoTests
{
    private MosquittoServer? _mosquitto;

    [SetUp]
    public void StartBroker()
    {
        TestServer.DatabaseKind.Value = "sqlite";
        _mosquitto = MosquittoServer.Start();
    }

    [TearDown]
    public void StopBroker() => _mosquitto?.Dispose();

    private Task<MqttClientConnectResultCode> LoginAsync(string mac, string password, IMqttClient? keep = null) =>
        _mosquitto!.LoginAsync(mac, password, keep, TestContext.Out.WriteLine);

    [Test]
    public async Task A_decommissioned_unit_is_disconnected_by_mosquitto_and_its_password_refused()
    {
        await using var server = await TestServer.StartAsync(mqtt: _mosquitto!.Setting);
        var units = await server.AddUnitsAsync(2);
        var (mac, other) = (units[0].Mac, units[1].Mac);
        var password = await server.BrokerPasswordAsync(mac);
        var otherPassword = await server.BrokerPasswordAsync(other);
        using var held = new MqttClientFactory().CreateMqttClient();
        using var otherHeld = new MqttClientFactory().CreateMqttClient();
        Assert.That(await LoginAsync(mac, password, held), Is.EqualTo(MqttClientConnectResultCode.Success));
        Assert.That(await LoginAsync(other, otherPassword, otherHeld), Is.EqualTo(MqttClientConnectResultCode.Success));

        await server.App.Services.GetRequiredService<UnitLifecycle>().DecommissionAsync(mac, null, "test", "stolen", CancellationToken.None);

        await server.WaitForAsync(() => !held.IsConnected, "Mosquitto to drop the decommissioned unit's session", TimeSpan.FromSeconds(20));
        Assert.That(await LoginAsync(mac, password), Is.Not.EqualTo(MqttClientConnectResultCode.Success), "its unexpired password is refused");
        Assert.That(otherHeld.IsConnected, Is.True, "another unit keeps its session");
    }

    [Test]
    public async Task A_deleted_unit_is_disabled_on_mosquitto_and_its_mac_registered_again_logs_in()
    {
        await using var server = await TestServer.StartAsync(mqtt: _mosquitto!.Setting);
        var mac = (await server.AddUnitsAsync(1))[0].Mac;
        var logins = server.App.Services.GetRequiredService<Tsunagu.Server.Push.UnitBrokerLogins>();
        // a password a host session set on the broker while the row was being deleted (the session marks the unit seen; this does not)
        var (password, _) = await logins.IssueAsync(mac, CancellationToken.None);
        using var held = new MqttClientFactory().CreateMqttClient();
        Assert.That(await LoginAsync(mac, password, held), Is.EqualTo(MqttClientConnectResultCode.Success));

        using (var client = server.Operator())
        {
            await client.SendAsync(HttpMethod.Delete, $"{Tsunagu.Protocol.Routes.Units}/{mac}", null, CancellationToken.None, "\"1\"");
        }

        await server.WaitForAsync(() => !held.IsConnected, "Mosquitto to drop the deleted unit's session", TimeSpan.FromSeconds(20));
        Assert.That(await LoginAsync(mac, password), Is.Not.EqualTo(MqttClientConnectResultCode.Success), "its unexpired password is refused");

        // the same MAC registered again is a unit of the fleet again: its account is enabled
        using (var again = server.Operator())
        {
            await again.RegisterAsync(TestServer.Registration(server.Identity(1)), CancellationToken.None);
        }
        var (fresh, _) = await logins.IssueAsync(mac, CancellationToken.None);
        Assert.That(await LoginAsync(mac, fresh), Is.EqualTo(MqttClientConnectResultCode.Success), "the registered unit logs in");
    }
}
