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
}
