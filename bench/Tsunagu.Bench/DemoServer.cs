using System.Security.Cryptography;
using Microsoft.AspNetCore.Builder;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Tsunagu.Cli.Factory;
using Tsunagu.Demo;
using Tsunagu.Protocol;
using Tsunagu.Protocol.Bundles;
using Tsunagu.Server;
using Tsunagu.Server.Data;

namespace Tsunagu.Bench;

/// <summary>
/// The server in the bench process on a free loopback port with the demo catalogue, and one unit registered on
/// it (its identity, not yet anywhere on disk). Disposing stops the server.
/// </summary>
public sealed class DemoServer : IAsyncDisposable
{
    private DemoServer(WebApplication app, ServerOptions options, ECDsa releaseKey, Uri url, string pin, FactoryIdentity unit)
    {
        (App, Options, ReleaseKey, Url, Pin, Unit) = (app, options, releaseKey, url, pin, unit);
    }

    public WebApplication App { get; }
    public ServerOptions Options { get; }
    public ECDsa ReleaseKey { get; }
    public Uri Url { get; }
    public string Pin { get; }
    public FactoryIdentity Unit { get; }
    public TsunaguStore Store => App.Services.GetRequiredService<TsunaguStore>();

    /// <param name="mqttPort">0: a free port for the embedded broker; -1: no broker.</param>
    /// <param name="unitTrustsReleaseKey">Whether the unit's identity carries the release key (it can install the demo bundle).</param>
    public static async Task<DemoServer> StartAsync(string dataDirectory, int mqttPort, string mac, string serial, bool unitTrustsReleaseKey)
    {
        var options = new ServerOptions { DataDirectory = dataDirectory, Port = Tools.FreePort(), MqttPort = mqttPort };
        var app = await ServerHost.BuildAsync(options, logging: l => l.SetMinimumLevel(LogLevel.Error));
        var releaseKey = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var password = await DemoCatalogue.SeedAsync(app.Services.GetRequiredService<TsunaguStore>(), app.Services.GetRequiredService<ArtifactStore>(), releaseKey);
        await app.StartAsync();
        var url = new Uri(ServerHost.BaseUrl(app));
        var pin = OperatorClient.PinFromPemFile(Path.Combine(options.DataDirectory, "tls", Tsunagu.Server.Security.ServerCertificate.PemFile));
        var unitKey = app.Services.GetRequiredService<Tsunagu.Server.Apis.UnitKey>().Bytes;
        var identity = FactoryIdentities.Create(new IdentitySpec(mac, serial, DemoCatalogue.HardwareVersion, "simulated", url.ToString(),
            new WanAccount("pppoe", "setup", "provisional"), [pin], unitTrustsReleaseKey ? [ReleaseKeys.PublicKeyBase64(releaseKey)] : []), unitKey);
        using (var op = new OperatorClient(url, DemoCatalogue.OperatorName, password, [pin]))
        {
            await op.RegisterAsync(new RegisterUnitRequest(identity.Mac, identity.Serial, identity.HardwareVersion, new WanAccount("dhcp", null, null),
                null, null, null, null, null, null), CancellationToken.None);
        }
        return new DemoServer(app, options, releaseKey, url, pin, identity);
    }

    public async ValueTask DisposeAsync()
    {
        await App.StopAsync();
        await App.DisposeAsync();
        ReleaseKey.Dispose();
    }
}
