using System.Text.Json;
using Tsunagu.Protocol;
using Tsunagu.Server.Catalogue;
using Tsunagu.Server.Data;
using Tsunagu.Server.Push;
using Tsunagu.Server.Units.ForcedChecks;

namespace Tsunagu.Server.Subscribers;

/// <summary>A subscriber's change the configuration rules do not allow; the message says why, <see cref="Field"/> names the field when there is one.</summary>
public sealed class SubscriberChangeException(string message, string? field = null, bool conflict = false) : Exception(message)
{
    public string? Field { get; } = field;

    /// <summary>The change itself may be right but the unit's state refused it (changed meanwhile, nothing to cancel): 409, not 400.</summary>
    public bool Conflict { get; } = conflict;
}

/// <summary>What became of a subscriber's change: its revision, and whether the unit was told to check now.</summary>
public sealed record SubscriberChangeResult(long Revision, string? PushError);

/// <summary>
/// Settings changes by the subscriber (patent 0069-0070). The subscriber may change only the fields their contract's
/// allow-list names (<see cref="ServiceConfigFields"/>; by default what the portal edits); every change becomes a new revision
/// of the unit's service configuration with origin "subscriber", provisional until the unit applies it (applied)
/// and then confirms it is healthy with it (final). The unit is pushed to check at once.
/// </summary>
public sealed class SubscriberChanges(TsunaguStore store, IPushPublisher push, ForcedCheckService checks, Catalogue.OfferedCategories categories, ILogger<SubscriberChanges> log)
{
    public const string Origin = "subscriber";

    /// <summary>The unit, when it is registered to this subscriber; null for any other unit (not found, to them).</summary>
    public async Task<UnitRow?> OwnUnitAsync(string subscriber, string mac, CancellationToken ct = default) =>
        MacAddress.TryNormalize(mac, out var m) && await store.Units.GetUnitAsync(m, ct) is { } unit && unit.Subscriber == subscriber ? unit : null;

    /// <summary>The configuration a change starts from: the newest revision that did not fail (a failed one is not kept).</summary>
    private static (UnitConfigRow Row, ServiceConfiguration Document)? Current(IReadOnlyList<UnitConfigRow> oldestFirst)
    {
        var row = oldestFirst.LastOrDefault(c => c.Status != ConfigStatus.Failed);
        return row is null ? null : (row, JsonSerializer.Deserialize(row.Document, ProtocolJson.Default.ServiceConfiguration)!);
    }

    /// <summary>
    /// The unit's current configuration and every revision, newest first, from one read: the newest revision (what a
    /// change names as its basis) is always the one the current document was taken with.
    /// </summary>
    public async Task<((UnitConfigRow Row, ServiceConfiguration Document)? Current, IReadOnlyList<UnitConfigRow> Revisions)> ReadAsync(string mac, CancellationToken ct = default)
    {
        var revisions = await store.ServiceConfigs.ListUnitConfigsAsync(mac, ct);
        return (Current(revisions), revisions.Reverse().ToList());
    }

    /// <summary>The fields of a service configuration this subscriber's contract lets them change.</summary>
    public async Task<IReadOnlySet<string>> AllowedFieldsAsync(string subscriber, CancellationToken ct = default)
    {
        var contract = await store.Accounts.GetSubscriberContractAsync(subscriber, ct) ?? ServiceConfigFields.DefaultContract;
        return (await store.Accounts.GetContractAsync(contract, ct) ?? ServiceConfigFields.PortalDefault).ToHashSet(StringComparer.Ordinal);
    }

    /// <summary>
    /// Stores <paramref name="change"/> of the unit's current configuration as a new revision and tells the unit.
    /// <paramref name="basis"/>: the newest revision the subscriber saw (the ETag of the API's GET, the revision the portal
    /// page showed); the change is stored only while it is still the newest, else refused as a conflict. Without it, the
    /// newest revision read here is the one compared, so a change saved meanwhile is still never overwritten unseen.
    /// </summary>
    /// <exception cref="SubscriberChangeException">The change is invalid, or the unit's settings changed since <paramref name="basis"/> (nothing stored).</exception>
    /// <exception cref="FieldNotAllowedException">The change touches a field the contract leaves to the operator (nothing stored).</exception>
    public async Task<SubscriberChangeResult> ChangeAsync(string subscriber, string mac, string what,
        Func<ServiceConfiguration, ServiceConfiguration> change, CancellationToken ct, long? basis = null)
    {
        var unit = await OwnUnitAsync(subscriber, mac, ct) ?? throw new SubscriberChangeException($"unit {mac} is not yours");
        var revisions = await store.ServiceConfigs.ListUnitConfigsAsync(unit.Mac, ct);
        var current = Current(revisions)
            ?? throw new SubscriberChangeException("your unit has no service configuration yet; the operator assigns the first one");
        if (basis is { } seen && seen != revisions[^1].Revision)
        {
            // older than the newest: stale; newer: saved since the read above, so the document changed here is not the one seen
            throw new SubscriberChangeException(
                $"your unit's settings changed since revision {seen} (they are at revision {revisions[^1].Revision} now; by you elsewhere, your provider or a retry); nothing was saved: look at them again and redo the change",
                conflict: true);
        }
        var next = change(current.Document);
        try
        {
            categories.Validate(next, current.Document);
        }
        catch (InvalidServiceConfigException e)
        {
            throw new SubscriberChangeException(e.Message, e.Field);
        }
        ServiceConfigFields.RequireAllowed(current.Document, next, await AllowedFieldsAsync(subscriber, ct));
        long revision;
        try
        {
            // stored only while the revision read above is still the newest: a change made at the same moment is not lost
            revision = await store.ServiceConfigs.AddUnitConfigAsync(unit.Mac, next, Origin,
                r => new AuditEntry($"subscriber:{subscriber}", "unit.service-config", unit.Mac, $"revision {r}: {what}"), expectedRevision: basis ?? revisions[^1].Revision, ct: ct);
        }
        catch (StaleConfigRevisionException e)
        {
            throw new SubscriberChangeException(basis is null
                ? "your unit's settings were changed at the same moment (by you elsewhere or your provider); nothing was saved: look at them again and redo the change"
                : $"your unit's settings changed since revision {basis} (they are at revision {e.Actual} now; by you elsewhere, your provider or a retry); nothing was saved: look at them again and redo the change",
                conflict: true);
        }
        if (push.BrokerUri is null)
        {
            return new(revision, "push is disabled on this server; the unit takes the change at its next periodic check");
        }
        try
        {
            await checks.SendAsync($"subscriber:{subscriber}", [unit.Mac], 5, PushReasons.Config, ct);
            return new(revision, null);
        }
        catch (PushException e)
        {
            log.LogWarning("unit {Mac}: push after subscriber change failed: {Error}", unit.Mac, e.Message);
            return new(revision, $"the unit could not be told at once ({e.Message}); it takes the change at its next check");
        }
    }
}
