using System.Collections.Concurrent;
using Tsunagu.Protocol;
using Tsunagu.Server.Data;
using Tsunagu.Server.Push;

namespace Tsunagu.Server.Units.ForcedChecks;

/// <summary>Why a forced check selected no units: the message names the field; <see cref="NotFound"/> when a named unit is not registered.</summary>
public sealed class ForcedCheckSelectionException(string message, bool notFound = false) : Exception(message)
{
    public bool NotFound { get; } = notFound;
}

/// <summary>
/// Forced checks with delivery (patent 0053, 0071): each selected unit gets a push with a nonce of its own, recorded in
/// the database before it is sent; the unit acknowledges the nonce on its status topic (<see cref="BrokerLink"/> marks
/// the row delivered), and <see cref="BrokerLink"/> sends undelivered checks again when the unit comes online. Nothing
/// is kept in memory, so any replica can answer for any check. The operator API, the console, a new service
/// configuration and a subscriber's change all send through here.
/// </summary>
public sealed class ForcedCheckService(TsunaguStore store, IPushPublisher push, TimeProvider time)
{
    /// <summary>Publishes in flight at once to the broker: one at a time waits a round trip per unit (10,000 units: seconds).</summary>
    public const int PushWindow = 64;

    /// <summary>
    /// The units a forced check selects: the given MACs (each must be registered) that also match the pattern,
    /// application and version filters, or every unit matching the filters when no MAC is given.
    /// </summary>
    /// <exception cref="ForcedCheckSelectionException">The selection is malformed or names an unregistered unit.</exception>
    /// <exception cref="PushException">Push is disabled on this server.</exception>
    public async Task<IReadOnlyList<string>> SelectAsync(ForceCheckRequest request, CancellationToken ct = default)
    {
        if ((request.Macs is null || request.Macs.Count == 0) && request.Pattern is null && request.Application is null)
        {
            throw new ForcedCheckSelectionException("select units: give macs, pattern, application (and version), or a combination");
        }
        if (request.Version is not null && request.Application is null)
        {
            throw new ForcedCheckSelectionException("version: selecting by version needs application");
        }
        if (push.BrokerUri is null)
        {
            throw new PushException("push is disabled on this server");
        }
        var matching = (await store.Units.QueryUnitsAsync(new UnitQuery(request.Pattern, Application: request.Application, Version: request.Version), ct))
            .Select(u => u.Mac).ToHashSet();
        var selected = new List<string>();
        if (request.Macs is { Count: > 0 })
        {
            foreach (var text in request.Macs)
            {
                if (!MacAddress.TryNormalize(text, out var mac)) { throw new ForcedCheckSelectionException($"macs: '{text}' is not a MAC address"); }
                if (await store.Units.GetUnitAsync(mac, ct) is null) { throw new ForcedCheckSelectionException($"unit {mac} is not registered", notFound: true); }
                if (matching.Contains(mac) && !selected.Contains(mac)) { selected.Add(mac); }
            }
        }
        else
        {
            selected.AddRange(matching.Order(StringComparer.Ordinal));
        }
        return selected;
    }

    /// <summary>
    /// The operator's "check now": <see cref="SendAsync"/> with an audit entry (action <c>units.check</c>) written in the
    /// same transaction as the check's record.
    /// </summary>
    public Task<ForceCheckResponse> CheckNowAsync(string actor, IReadOnlyList<string> macs, int importance, CancellationToken ct) =>
        RecordAndSendAsync(actor, macs, importance, PushReasons.Operator, checkId => new AuditEntry(actor, "units.check", string.Join(",", macs), $"importance {importance}; check {checkId}"), ct);

    /// <summary>
    /// Records and sends a forced check. Throws <see cref="PushException"/> (nothing recorded) when push is disabled or
    /// the server's broker link is down; once recorded, a unit whose push fails is left pending and sent again.
    /// <paramref name="reason"/> (<see cref="PushReasons"/>) travels with the push and its resends: only
    /// <see cref="PushReasons.Operator"/> forces the unit's pending updates.
    /// </summary>
    public Task<ForceCheckResponse> SendAsync(string actor, IReadOnlyList<string> macs, int importance, string reason, CancellationToken ct) =>
        RecordAndSendAsync(actor, macs, importance, reason, audit: null, ct);

    private async Task<ForceCheckResponse> RecordAndSendAsync(string actor, IReadOnlyList<string> macs, int importance, string reason, Func<string?, AuditEntry>? audit,
        CancellationToken ct)
    {
        if (push.BrokerUri is null)
        {
            throw new PushException("push is disabled on this server");
        }
        if (!push.Connected)
        {
            throw new PushException($"the server is not connected to the broker {push.BrokerUri} right now (it reconnects by itself); nothing was sent, try again shortly");
        }
        if (macs.Count == 0)
        {
            if (audit is not null) { await store.AuditAsync(audit(null), ct); }
            return new ForceCheckResponse(macs, null, []);
        }
        var checkId = Guid.NewGuid().ToString("N");
        var units = macs.Select(mac => (Mac: mac, Nonce: UnitCredentials.NewNonce(12))).ToList();
        await store.PushChecks.AddPushCheckAsync(checkId, actor, importance, units, audit?.Invoke(checkId), reason, ct: ct);
        var issuedAt = time.GetUtcNow();
        var failed = new ConcurrentQueue<string>();
        // QoS 1 publishes pipelined on the server's one connection (PUBACKs awaited concurrently), up to PushWindow at once
        await Parallel.ForEachAsync(units, new ParallelOptions { MaxDegreeOfParallelism = PushWindow, CancellationToken = ct }, async (unit, token) =>
        {
            try
            {
                await push.PublishAsync(unit.Mac, new PushMessage(PushMessage.CheckNow, importance, unit.Nonce, issuedAt, reason), token);
            }
            catch (PushException)
            {
                failed.Enqueue(unit.Mac); // recorded as undelivered: sent again when the link or the unit is back
            }
        });
        return new ForceCheckResponse(macs, checkId, (await store.PushChecks.GetPushCheckAsync(checkId, ct)).Select(ToView).ToList());
    }

    /// <summary>
    /// Sends a check recorded unsent (<see cref="PendingPushCheck"/>), <see cref="PushWindow"/> pushes at a time, marking
    /// those the broker took as sent after each window in one transaction (one commit per window, not per unit). Records
    /// not marked yet (their window not sent or in flight) are unsent to the broker link's resends too, which may send one
    /// of them a second time. Returns how many were not sent (the link is down, or the push
    /// failed): their records stay unsent and the resends send them once the link and the unit are back.
    /// </summary>
    public async Task<int> SendRecordedAsync(PendingPushCheck check, CancellationToken ct)
    {
        if (push.BrokerUri is null || !push.Connected) { return check.Units.Count; }
        var issuedAt = time.GetUtcNow();
        var unsent = 0;
        foreach (var window in check.Units.Chunk(PushWindow))
        {
            var sent = new ConcurrentQueue<string>();
            await Parallel.ForEachAsync(window, new ParallelOptions { MaxDegreeOfParallelism = PushWindow, CancellationToken = ct }, async (unit, token) =>
            {
                try
                {
                    await push.PublishAsync(unit.Mac, new PushMessage(PushMessage.CheckNow, check.Importance, unit.Nonce, issuedAt, check.Reason), token);
                    sent.Enqueue(unit.Mac);
                }
                catch (PushException)
                {
                    // left unsent: the resends send it when the link or the unit is back
                }
            });
            await store.PushChecks.MarkPushesSentAsync(check.CheckId, sent, ct);
            unsent += window.Length - sent.Count;
        }
        return unsent;
    }

    public static PushDelivery ToView(PushCheckRow row) => new(row.Mac, row.Status, (int)row.Attempts, Parse(row.SentAt), Parse(row.DeliveredAt));

    /// <summary>A forced check's deliveries so far; null when there is no such check.</summary>
    public async Task<ForceCheckStatus?> StatusAsync(string checkId, CancellationToken ct = default)
    {
        var rows = await store.PushChecks.GetPushCheckAsync(checkId, ct);
        if (rows.Count == 0)
        {
            return null;
        }
        var units = rows.Select(ToView).ToList();
        return new ForceCheckStatus(checkId, Parse(rows[0].CreatedAt)!.Value, (int)rows[0].Importance, rows[0].Actor,
            units.Count(u => u.Status == PushCheckStatus.Delivered), units.Count(u => u.Status == PushCheckStatus.Pending),
            units.Count(u => u.Status == PushCheckStatus.Offline), units);
    }

    private static DateTimeOffset? Parse(string? at) =>
        at is null ? null : DateTimeOffset.Parse(at, System.Globalization.CultureInfo.InvariantCulture, System.Globalization.DateTimeStyles.AssumeUniversal);
}
