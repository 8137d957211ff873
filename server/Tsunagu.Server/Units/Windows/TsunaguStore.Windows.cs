using Dapper;

namespace Tsunagu.Server.Data;

public sealed partial class TsunaguStore
{
    /// <summary>
    /// Sets a unit's own low-utilisation window (both hours, or neither: the fleet's policy) and time zone (null: the
    /// fleet's), with the audit entry, in one transaction. False when the unit is not registered.
    /// </summary>
    public bool SetUpdateWindow(string mac, int? startHour, int? endHour, string? timeZone, AuditEntry audit)
    {
        using var c = Open();
        using var tx = Begin(c);
        var changed = c.Execute("UPDATE units SET low_window_start = @startHour, low_window_end = @endHour, time_zone = @timeZone WHERE mac = @mac",
            new { mac, startHour, endHour, timeZone }, tx);
        if (changed == 0) { return false; }
        WriteAudit(c, tx, audit);
        tx.Commit();
        return true;
    }
}
