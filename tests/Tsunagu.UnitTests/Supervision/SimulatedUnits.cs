using System.Net;
using System.Text;
using System.Text.Json;
using System.Text.Json.Serialization.Metadata;
using Tsunagu.Firmware.Storage;
using Tsunagu.Hal;
using Tsunagu.Hal.Simulated;
using Tsunagu.Protocol;

namespace Tsunagu.UnitTests.Supervision;

/// <summary>
/// The unit the supervisor tests run on the simulated HAL: its prom and factory identity, the settings a provisioned unit
/// stores, and the factory OS committed in slot A; and the answers of the scripted hosts they talk to.
/// </summary>
internal static class SimulatedUnits
{
    public const string Mac = "02:54:53:00:00:01";

    /// <summary>The unit secret the factory burns (derived from an all-zero unit key).</summary>
    public static readonly byte[] Secret = UnitCredentials.DeriveUnitSecret(new byte[32], Mac);

    /// <summary>The application versions of the prom the tests build unless they say otherwise.</summary>
    public static IReadOnlyDictionary<string, string> Applications => new Dictionary<string, string> { ["vcp"] = "1.0.0" };

    /// <summary>
    /// A unit in <paramref name="directory"/>/<paramref name="name"/> whose prom (in <paramref name="directory"/>/prom, built
    /// once) runs "os 1" with <paramref name="applications"/>, on <paramref name="time"/> (null: the unit's own clocks).
    /// </summary>
    public static SimulatedUnit New(string directory, string name = "unit", IReadOnlyDictionary<string, string>? applications = null, TimeProvider? time = null)
    {
        var prom = Path.Combine(directory, "prom");
        if (!Directory.Exists(prom)) { DirectoryPromPartition.Build(prom, "os 1", new Dictionary<string, string>(applications ?? Applications)); }
        return new SimulatedUnit(Path.Combine(directory, name), prom, time);
    }

    /// <summary>Burns the factory identity of <see cref="Mac"/> (bootstrap over PPPoE, one pinned key, <see cref="Secret"/>).</summary>
    public static Task BurnAsync(SimulatedUnit unit, bool singleLink = false) =>
        DirectoryFactoryPartition.BurnAsync(unit.Factory.Root, new FactoryIdentity(1, Mac, "S1", "r1", "simulated",
            new BootstrapInfo("https://127.0.0.1:1/", new WanAccount("pppoe", "setup", "pw"), singleLink), ["pin"], [], Convert.ToBase64String(Secret)), CancellationToken.None);

    /// <summary>The settings a provisioned unit stores (its ISP account; boot goes to Main).</summary>
    public static UnitSettings Settings => new(Mac, new WanAccount("pppoe", "u", "p"), null, null, null, null, "https://127.0.0.1:1/", null);

    /// <summary>Writes <see cref="Settings"/> to the unit's data partition, and whatever <paramref name="seed"/> adds.</summary>
    public static void StoreSettings(SimulatedUnit unit, Action<StateStore>? seed = null)
    {
        Directory.CreateDirectory(unit.Data.Root);
        using var store = StateStore.Open(unit.Data.Root);
        store.Set(StateKeys.Settings, Settings, FirmwareJson.Default.UnitSettings);
        seed?.Invoke(store);
    }

    /// <summary>OS 1.0 written to slot A, booted and marked good: a unit that has run its factory OS.</summary>
    public static async Task CommitSlotAAsync(SimulatedUnit unit)
    {
        var boot = unit.Boot;
        await boot.WriteAsync(BootSlot.A, new MemoryStream([1]), "1.0", CancellationToken.None);
        boot.Activate(BootSlot.A, 1);
        await boot.RebootAsync(CancellationToken.None);
        boot.MarkGood(BootSlot.A);
    }

    /// <summary>A 200 answer with <paramref name="value"/> as JSON.</summary>
    public static HttpResponseMessage Json<T>(T value, JsonTypeInfo<T> type) =>
        new(HttpStatusCode.OK) { Content = new StringContent(JsonSerializer.Serialize(value, type), Encoding.UTF8, "application/json") };

    /// <summary>A problem document of <paramref name="type"/> with <paramref name="status"/>.</summary>
    public static HttpResponseMessage Problem(HttpStatusCode status, string type, string detail) =>
        new(status) { Content = new StringContent($$"""{"type":"{{type}}","detail":"{{detail}}"}""", Encoding.UTF8, "application/problem+json") };
}
