using System.Collections.Concurrent;
using Tsunagu.Protocol;
using Tsunagu.Server.Data;

namespace Tsunagu.Server.Push;

/// <summary>
/// Forced checks with delivery (patent 0053, 0071): each selected unit gets a push with a nonce of its own, recorded in
/// the database before it is sent; the unit acknowledges the nonce on its status topic (<see cref="BrokerLink"/> marks
/// the row delivered), and <see cref="BrokerLink"/> sends undelivered checks again when the unit comes online. Nothing
/// is kept in memory, so any replica can answer for any check.
/// </summary>
public static class PushChecks
{
    /// <summary>Publishes in flight at once to the broker: one at a time waits a round trip per unit (10,000 units: seconds).</summary>
    public const int PushWindow = 64;

    /// <summary>
    /// Records and sends a forced check. Throws <see cref="PushException"/> (nothing recorded) when push is disabled or
    /// the server's broker link is down; once recorded, a unit whose push fails is left pending and sent again.
    /// </summary>
    public static async Task<ForceCheckResponse> SendAsync(IPushPublisher push, TsunaguStore store, TimeProvider time, string actor,
        IReadOnlyList<string> macs, int importance, CancellationToken ct)
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
            return new ForceCheckResponse(macs, null, []);
        }
        var checkId = Guid.NewGuid().ToString("N");
        var units = macs.Select(mac => (Mac: mac, Nonce: UnitCredentials.NewNonce(12))).ToList();
        store.AddPushCheck(checkId, actor, importance, units);
        var issuedAt = time.GetUtcNow();
        var failed = new ConcurrentQueue<string>();
        // QoS 1 publishes pipelined on the server's one connection (PUBACKs awaited concurrently), up to PushWindow at once
        await Parallel.ForEachAsync(units, new ParallelOptions { MaxDegreeOfParallelism = PushWindow, CancellationToken = ct }, async (unit, token) =>
        {
            try
            {
                await push.PublishAsync(unit.Mac, new PushMessage(PushMessage.CheckNow, importance, unit.Nonce, issuedAt), token);
            }
            catch (PushException)
            {
                failed.Enqueue(unit.Mac); // recorded as undelivered: sent again when the link or the unit is back
            }
        });
        return new ForceCheckResponse(macs, checkId, store.GetPushCheck(checkId).Select(ToView).ToList());
    }

    public static PushDelivery ToView(PushCheckRow row) => new(row.Mac, row.Status, (int)row.Attempts, Parse(row.SentAt), Parse(row.DeliveredAt));

    public static ForceCheckStatus? Status(TsunaguStore store, string checkId)
    {
        var rows = store.GetPushCheck(checkId);
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
