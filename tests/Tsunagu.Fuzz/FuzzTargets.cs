using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using Tsunagu.Firmware.Net;
using Tsunagu.Firmware.Services;
using Tsunagu.Hal;
using Tsunagu.Protocol;
using Tsunagu.Protocol.Bundles;
using Tsunagu.Server.Data;
using Tsunagu.Server.Units.Registration;

namespace Tsunagu.Fuzz;

/// <summary>What one input did to a parser: it was accepted, or refused with the parser's documented exception.</summary>
public enum FuzzOutcome { Accepted, Refused }

/// <summary>
/// One parser of untrusted bytes. <see cref="Execute"/> feeds it an input: the parser's documented typed
/// exceptions (<see cref="Refusals"/>) mean "refused", as does a parser's own verdict where it returns one (the
/// CSV check's file and row errors); any other exception escapes and is a crash. <c>run</c> returns whether the
/// input was accepted.
/// </summary>
public sealed class FuzzTarget(string name, string parser, IReadOnlyList<Type> refusals, Func<byte[], bool> run)
{
    public string Name { get; } = name;

    /// <summary>What the target calls, for reports.</summary>
    public string Parser { get; } = parser;

    public IReadOnlyList<Type> Refusals { get; } = refusals;

    /// <exception cref="Exception">Anything but a refusal: a crash.</exception>
    public FuzzOutcome Execute(byte[] input)
    {
        try
        {
            return run(input) ? FuzzOutcome.Accepted : FuzzOutcome.Refused;
        }
        catch (Exception e) when (Refusals.Any(t => t.IsInstanceOfType(e)))
        {
            return FuzzOutcome.Refused;
        }
    }

    public override string ToString() => Name;
}

/// <summary>Every fuzz target, by name (docs/security.md, "Fuzzing").</summary>
public static class FuzzTargets
{
    public static IReadOnlyList<FuzzTarget> All { get; } =
    [
        new("bundle", "BundleFormat.ReadHeaderAsync, ReleaseKeySet.Verify, BundleHeader.ParseManifest, BundleVerifier.CheckTarget and VerifyPayloadsAsync",
            [typeof(BundleCheckException)], Bundle),
        new("manifest", "BundleHeader.ParseManifest (BundleManifest JSON and its rules)", [typeof(BundleCheckException)], Manifest),
        new("media", "MediaImage.InspectAsync (install medium: tar stream and index)", [typeof(MediaFormatException)], Media),
        new("service-config", "ServiceConfiguration JSON, ServiceConfigValidator.Validate, ServiceRenderer.Render",
            [typeof(JsonException), typeof(InvalidServiceConfigException)], ServiceConfig),
        new("board", "BoardDescription.Parse (board.json)", [typeof(BoardDescriptionException)], Board),
        new("csv", "DeviceTable.Check (CSV device management table: Csv.Parse and every row's registration rules)", [], CsvImport),
        new("push", "PushListener.Parse (MQTT payload on the unit's command topic)", [typeof(JsonException)], Push),
        new("boot-state", "BootStateFile.Parse, Get/Set and its text round trip", [], BootState),
    ];

    public static FuzzTarget Get(string name) =>
        All.FirstOrDefault(t => t.Name == name)
        ?? throw new ArgumentException($"no fuzz target '{name}'; targets: {string.Join(", ", All.Select(t => t.Name))}", nameof(name));

    /// <summary>The key a unit trusts; no input is signed by it, so signature checks refuse and the harness goes on to what follows.</summary>
    private static readonly ReleaseKeySet TrustedKeys = new([ECDsa.Create(ECCurve.NamedCurves.nistP256)]);

    private static readonly BundleTarget UnitTarget = new("simulated", "r1", "tsunagu-os 1.0", "pattern-1",
        new BundleCounter(1, "b1"), new DateTimeOffset(2026, 1, 1, 0, 0, 0, TimeSpan.Zero));

    private static bool Bundle(byte[] input)
    {
        using var stream = new MemoryStream(input, writable: false);
        var header = BundleFormat.ReadHeaderAsync(stream, CancellationToken.None).GetAwaiter().GetResult();
        // the unit stops at a bad signature; the harness goes on so that the parsers behind it are reached too
        try { TrustedKeys.Verify(header); }
        catch (BundleCheckException e) when (e.Check == BundleCheck.Signature) { }
        var manifest = header.ParseManifest();
        _ = manifest.PayloadBytes;
        // and past a bundle made for another unit, to reach the payload checks
        try { BundleVerifier.CheckTarget(manifest, UnitTarget); }
        catch (BundleCheckException e) when (e.Check is not (BundleCheck.Format or BundleCheck.Manifest)) { }
        BundleVerifier.VerifyPayloadsAsync(stream, manifest, CancellationToken.None).GetAwaiter().GetResult();
        return true;
    }

    private static bool Manifest(byte[] input)
    {
        var manifest = new BundleHeader(input, [], 0).ParseManifest();
        _ = manifest.PayloadBytes;
        BundleVerifier.CheckTarget(manifest, UnitTarget);
        return true;
    }

    private static bool Media(byte[] input)
    {
        using var stream = new MemoryStream(input, writable: false);
        MediaImage.InspectAsync(stream, CancellationToken.None).GetAwaiter().GetResult();
        return true;
    }

    private static readonly ServiceEnvironment Environment =
        new(BoardDescription.Simulated with { Hdd = new BoardHdd("/hdd") }, "/run/tsunagu", "/data/services/state");

    private static bool ServiceConfig(byte[] input)
    {
        var config = JsonSerializer.Deserialize(input, ProtocolJson.Default.ServiceConfiguration)
                     ?? throw new JsonException("null: no service configuration");
        ServiceRenderer.Render(config, Environment);
        return true;
    }

    private static bool Board(byte[] input)
    {
        BoardDescription.Parse(Encoding.UTF8.GetString(input), "fuzz input");
        return true;
    }

    private static readonly Lazy<TsunaguStore> Store = new(() =>
    {
        var directory = Directory.CreateTempSubdirectory("tsunagu-fuzz-csv-").FullName;
        AppDomain.CurrentDomain.ProcessExit += (_, _) =>
        {
            try { Directory.Delete(directory, recursive: true); }
            catch (IOException) { }
        };
        var database = Database.Parse("tsunagu.db", directory);
        database.Migrate();
        return new TsunaguStore(database, TimeProvider.System);
    });

    // the fuzzer runs its targets synchronously; the store on SQLite completes its work before it returns the task
    private static bool CsvImport(byte[] input) => CsvImportAsync(input).GetAwaiter().GetResult();

    private static async Task<bool> CsvImportAsync(byte[] input)
    {
        var check = await DeviceTable.CheckAsync(Encoding.UTF8.GetString(input), Store.Value);
        if (check.FileError is null && check.Rows.Count != CountDataRows(input))
        {
            // every data row gets exactly one result
            throw new InvalidOperationException($"csv: {check.Rows.Count} row results for {CountDataRows(input)} data rows");
        }
        return check.CanCommit;
    }

    private static int CountDataRows(byte[] input) => Math.Max(0, Csv.Parse(Encoding.UTF8.GetString(input)).Count - 1);

    private static bool Push(byte[] input)
    {
        if (PushListener.Parse(input) is not { } message) { return false; }
        // what the supervisor reads of it
        _ = $"push: {message.Type} (importance {message.Importance})";
        return message.Type == PushMessage.CheckNow;
    }

    private static bool BootState(byte[] input)
    {
        var state = BootStateFile.Parse(Encoding.UTF8.GetString(input));
        foreach (var (key, _) in BootStateFile.Defaults)
        {
            if (state.Get(key) is null) { throw new InvalidOperationException($"boot state: known key {key} missing after parse"); }
        }
        _ = state.GetSlot(BootStateFile.Primary);
        _ = state.GetSlot(BootStateFile.Pending);
        var tries = state.GetInt(BootStateFile.Tries);
        var text = state.ToString();
        if (BootStateFile.Parse(text).ToString() != text)
        {
            throw new InvalidOperationException("boot state: the written file does not read back as itself");
        }
        state.SetInt(BootStateFile.Tries, tries > 0 ? tries - 1 : 0);
        state.SetSlot(BootStateFile.Pending, null);
        var again = BootStateFile.Parse(state.ToString());
        if (again.GetInt(BootStateFile.Tries) != (tries > 0 ? tries - 1 : 0) || again.GetSlot(BootStateFile.Pending) is not null)
        {
            throw new InvalidOperationException("boot state: a value set does not read back");
        }
        return true;
    }
}
