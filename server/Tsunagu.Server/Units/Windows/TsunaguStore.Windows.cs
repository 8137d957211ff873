using Dapper;

namespace Tsunagu.Server.Data;

public sealed partial class TsunaguStore
{
    /// <summary>
    /// Sets a unit's own low-utilisation window (both hours, or neither: the fleet's policy) and time zone (null: the
    /// fleet's), with the audit entry, in one transaction. False when the unit is not registered.
    /// </summary>
    public async Task<bool> SetUpdateWindowAsync(string mac, int? startHour, int? endHour, string? timeZone, AuditEntry audit, CancellationToken ct = default)
    {
        await using var c = await OpenAsync(ct);
        await using var tx = await BeginAsync(c, ct);
        var changed = await c.ExecuteAsync(new CommandDefinition("UPDATE units SET low_window_start = @startHour, low_window_end = @endHour, time_zone = @timeZone WHERE mac = @mac",
            new { mac, startHour, endHour, timeZone }, tx, cancellationToken: ct));
        if (changed == 0) { return false; }
        await WriteAuditAsync(c, tx, audit, ct);
        await tx.CommitAsync(ct);
        return true;
    }
}
