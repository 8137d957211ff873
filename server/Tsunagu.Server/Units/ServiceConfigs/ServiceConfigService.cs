using Tsunagu.Protocol;
using Tsunagu.Server.Data;
using Tsunagu.Server.Push;
using Tsunagu.Server.Units.ForcedChecks;

namespace Tsunagu.Server.Units.ServiceConfigs;

/// <summary>The outcome of an operator's new service configuration for a unit: its revision and why the unit was not told at once, if it was not.</summary>
public sealed record ServiceConfigAssignment(string Mac, long Revision, string? PushWarning);

/// <summary>
/// A unit's service configuration as the operator sets it (patent S500; the API's <c>PUT /api/v1/units/{mac}/service-config</c>
/// and the console's unit page both call this): the document is validated by type and grammar
/// (<see cref="ServiceConfigValidator"/>) and its content-filter categories against those offered
/// (<see cref="Catalogue.OfferedCategories"/>) before anything is stored; the new revision (provisional) and its audit entry
/// (<c>unit.service-config</c>) commit together; then the unit is told over MQTT to fetch it at once. A refused document
/// stores nothing.
/// </summary>
public sealed class ServiceConfigService(TsunaguStore store, IPushPublisher push, ForcedCheckService checks, ServerOptions options, Catalogue.OfferedCategories categories)
{
    /// <summary>How many attempts a failed revision gets in all (the first and the host's retries, patent 0070).</summary>
    public int RetryAttempts => options.ConfigRetryAttempts;

    /// <summary>Validates <paramref name="config"/>, stores it as the unit's next revision with its audit entry, and pushes "fetch it now".</summary>
    /// <exception cref="UnitNotFoundException">No unit has MAC <paramref name="mac"/> (normalized or not).</exception>
    /// <exception cref="InvalidServiceConfigException">The document cannot be applied; <see cref="InvalidServiceConfigException.Field"/> names the field. Nothing was stored.</exception>
    /// <exception cref="StaleConfigRevisionException">
    /// <paramref name="baseRevision"/> (the newest revision the change was made from; 0: none) is no longer the unit's newest. Nothing was stored.
    /// </exception>
    public async Task<ServiceConfigAssignment> AssignAsync(string mac, ServiceConfiguration config, string actor, CancellationToken ct, long? baseRevision = null)
    {
        if (!MacAddress.TryNormalize(mac, out var m) || await store.Units.GetUnitAsync(m, ct) is null)
        {
            throw new UnitNotFoundException(mac);
        }
        // a category the newest revision chose stays allowed after the operator stops offering it
        categories.Validate(config, (await LatestAsync(m, ct))?.Document);
        var revision = await store.ServiceConfigs.AddUnitConfigAsync(m, config, audit: r => new AuditEntry(actor, "unit.service-config", m, $"revision {r}"), expectedRevision: baseRevision, ct: ct);
        string? pushWarning = null;
        if (push.BrokerUri is null)
        {
            pushWarning = "push is disabled on this server; the unit takes the change at its next periodic check";
        }
        else
        {
            try
            {
                await checks.SendAsync(actor, [m], 5, PushReasons.Config, ct);
            }
            catch (PushException e)
            {
                pushWarning = $"the unit could not be told at once ({e.Message}); it takes the change at its next check";
            }
        }
        return new ServiceConfigAssignment(m, revision, pushWarning);
    }

    /// <summary>The unit's newest revision and its document, or null when it has none.</summary>
    public async Task<(UnitConfigRow Row, ServiceConfiguration Document)?> LatestAsync(string mac, CancellationToken ct = default)
    {
        if (await store.ServiceConfigs.LatestUnitConfigAsync(mac, ct) is not { } row) { return null; }
        var document = System.Text.Json.JsonSerializer.Deserialize(row.Document, ProtocolJson.Default.ServiceConfiguration);
        return document is null ? null : (row, document);
    }

    /// <summary>What a revision's state means now, for people (<see cref="Subscribers.ConfigRetries.Describe"/>: retries, attempts, the final outcome).</summary>
    public string Describe(UnitConfigRow revision, bool newest) => Subscribers.ConfigRetries.Describe(revision, newest, RetryAttempts);
}
