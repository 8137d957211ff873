using System.CommandLine;
using System.Globalization;
using System.Text.Json;
using Tsunagu.Cli.Factory;
using Tsunagu.Server.Units.Lifecycle;
using Tsunagu.Server.Units.Registration;

namespace Tsunagu.Cli;

/// <summary>
/// The device management table's lifecycle on the command line, through the operator API (same rules and errors):
/// record, edit (with the revision it was read at), revisions, decommission, delete, replace (RMA), subscriber
/// transfer, and the rotation of the secrets key.
/// </summary>
public static class UnitLifecycleCommands
{

    private static string Path(string mac, string tail = "") => $"/api/v1/units/{Uri.EscapeDataString(mac)}{tail}";

    private static string? IfMatch(long? revision) => revision is { } r ? $"\"{r.ToString(CultureInfo.InvariantCulture)}\"" : null;

    private static string Format(string json) => ApiCommands.Format(json);

    public static IEnumerable<Command> UnitCommands(Option[] connection, Func<ParseResult, OperatorClient> connect, Func<Func<Task<int>>, Task<int>> guard)
    {
        Command With(Command c) => ApiCommands.WithConnection(c, connection);
        void Run(Command c, Func<ParseResult, OperatorClient, CancellationToken, Task<string>> action) => ApiCommands.Run(c, connect, guard, action);
        var macArg = new Argument<string>("mac") { Description = "unit MAC" };
        var revision = new Option<long?>("--revision") { Description = "the revision the change is made against (from `units record`); a newer row refuses the change (409)" };

        var record = With(new Command("record", "a unit's row of the device management table with its revision") { macArg });
        Run(record, (r, c, ct) => c.SendAsync(HttpMethod.Get, Path(r.GetValue(macArg)!, "/record"), null, ct));
        yield return record;

        var serial = new Option<string?>("--serial") { Description = "serial number" };
        var hardware = new Option<string?>("--hardware") { Description = "hardware version" };
        var ispMethod = new Option<string?>("--isp-method") { Description = "pppoe, dhcp or static" };
        var ispUser = new Option<string?>("--isp-user") { Description = "ISP account (\"\" clears)" };
        var ispPassword = new Option<string?>("--isp-password") { Description = "ISP password (\"\" clears; never shown back)" };
        var ip = new Option<string?>("--ip") { Description = "IP address (\"\" clears)" };
        var gateway = new Option<string?>("--gateway") { Description = "default gateway of a static WAN (\"\" clears)" };
        var dns = new Option<string[]>("--dns") { Description = "name servers of a static WAN, up to 3: repeat the option or separate with commas; they replace the row's (\"\" clears)" };
        var domain = new Option<string?>("--domain") { Description = "domain (\"\" clears)" };
        var vpn = new Option<string?>("--vpn") { Description = "VPN settings (\"\" clears)" };
        var globalIp = new Option<string?>("--global-ip") { Description = "global IP (\"\" clears)" };
        var subscriber = new Option<string?>("--subscriber") { Description = "subscriber account (\"\" clears)" };
        var edit = With(new Command("edit", "edit a unit's row; fields not given stay as they are. Without --revision the row is read first and edited at that revision")
        {
            macArg, revision, serial, hardware, ispMethod, ispUser, ispPassword, ip, gateway, dns, domain, vpn, globalIp, subscriber,
        });
        Run(edit, async (r, c, ct) =>
        {
            var mac = r.GetValue(macArg)!;
            var at = r.GetValue(revision) ?? JsonSerializer.Deserialize<UnitRecordView>(await c.SendAsync(HttpMethod.Get, Path(mac, "/record"), null, ct), JsonSerializerOptions.Web)!.Revision;
            return await c.SendJsonAsync(HttpMethod.Patch, Path(mac, "/record"), new UnitEditRequest(r.GetValue(serial), r.GetValue(hardware), r.GetValue(ispMethod),
                r.GetValue(ispUser), r.GetValue(ispPassword), r.GetValue(ip), r.GetValue(domain), r.GetValue(vpn), r.GetValue(globalIp), r.GetValue(subscriber),
                r.GetValue(gateway), NameServers(r, dns)), ct, IfMatch(at));
        });
        yield return edit;

        var revisions = With(new Command("revisions", "the revision history of a unit's row: who, when, what changed (secrets only as changed)") { macArg });
        Run(revisions, (r, c, ct) => c.SendAsync(HttpMethod.Get, Path(r.GetValue(macArg)!, "/revisions"), null, ct));
        yield return revisions;

        var reason = new Option<string?>("--reason") { Description = "why (kept in the audit log)" };
        var decommission = With(new Command("decommission", "revoke a unit: refused by every endpoint and the broker from now on; its row stays for audit") { macArg, revision, reason });
        Run(decommission, (r, c, ct) => c.SendJsonAsync(HttpMethod.Post, Path(r.GetValue(macArg)!, "/decommission"), new DecommissionRequest(r.GetValue(reason)), ct, IfMatch(r.GetValue(revision))));
        yield return decommission;

        var delete = With(new Command("delete", "delete a row that never reached the server (others are decommissioned instead)") { macArg, revision });
        delete.SetAction((r, ct) => guard(async () =>
        {
            using var client = connect(r);
            await client.SendAsync(HttpMethod.Delete, Path(r.GetValue(macArg)!), null, ct, IfMatch(r.GetValue(revision)));
            Console.WriteLine($"deleted {r.GetValue(macArg)}");
            return 0;
        }));
        yield return delete;

        var newMac = new Option<string>("--new-mac") { Description = "the replacement unit's MAC (from the factory)", Required = true };
        var newSerial = new Option<string>("--new-serial") { Description = "the replacement unit's serial number", Required = true };
        var newHardware = new Option<string?>("--new-hardware") { Description = "the replacement's hardware version (default: the old unit's)" };
        var replace = With(new Command("replace", "replace a unit (RMA): the new one takes its subscriber, settings, service configuration and target pattern; the old one is decommissioned")
        {
            macArg, revision, newMac, newSerial, newHardware,
        });
        Run(replace, (r, c, ct) => c.SendJsonAsync(HttpMethod.Post, Path(r.GetValue(macArg)!, "/replace"),
            new ReplaceUnitRequest(r.GetValue(newMac)!, r.GetValue(newSerial)!, r.GetValue(newHardware)), ct, IfMatch(r.GetValue(revision))));
        yield return replace;

        var to = new Option<string>("--to") { Description = "the unit that takes the subscriber (it must have none)", Required = true };
        var noConfig = new Option<bool>("--no-config") { Description = "leave the target unit's service configuration as it is" };
        var transfer = With(new Command("transfer-subscriber", "move a unit's subscriber (portal login and service configuration) to another unit") { macArg, revision, to, noConfig });
        Run(transfer, (r, c, ct) => c.SendJsonAsync(HttpMethod.Post, Path(r.GetValue(macArg)!, "/transfer-subscriber"),
            new TransferSubscriberRequest(r.GetValue(to)!, !r.GetValue(noConfig)), ct, IfMatch(r.GetValue(revision))));
        yield return transfer;
    }

    /// <summary>The name servers an edit sets: null when --dns is not given (they stay), empty when it is only "" (cleared).</summary>
    private static IReadOnlyList<string>? NameServers(ParseResult r, Option<string[]> dns) =>
        r.GetResult(dns) is null ? null : UnitRegistration.NameServers(string.Join(',', r.GetValue(dns) ?? [])) ?? [];

    public static Command Secrets(Option[] connection, Func<ParseResult, OperatorClient> connect, Func<Func<Task<int>>, Task<int>> guard)
    {
        var rotate = new Command("rotate", "make a new secrets key (keys/secrets.key) and reseal every secret of the device management table with it");
        foreach (var o in connection) { rotate.Options.Add(o); }
        rotate.SetAction((r, ct) => guard(async () =>
        {
            using var client = connect(r);
            var result = JsonSerializer.Deserialize<SecretRotationResult>(await client.SendAsync(HttpMethod.Post, UnitLifecycleApi.SecretsRotate, null, ct), JsonSerializerOptions.Web)!;
            Console.WriteLine($"secrets key rotated: now {result.KeyId}; {result.Resealed} row(s) resealed. Back up keys/secrets.key with the database.");
            return 0;
        }));
        return new Command("secrets", "the key the device management table's secrets are sealed with") { rotate };
    }
}
