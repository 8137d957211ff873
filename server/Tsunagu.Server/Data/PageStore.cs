using System.Text;
using Dapper;

namespace Tsunagu.Server.Data;

/// <summary>The columns a unit list can be sorted by (each with the MAC as tie-breaker, so the order is total).</summary>
public enum UnitSort { Mac, Serial, State, Pattern, Subscriber, LastSeen }

/// <summary>
/// Where a page of units starts: after the row with this sort key and MAC (keyset paging: the next page is found
/// through the order itself, never by counting rows to skip, so page 2,000 costs what page 1 costs).
/// </summary>
public sealed record UnitCursor(string Key, string Mac)
{
    /// <summary>The longest sort key a cursor may carry (the longest stored value is far shorter).</summary>
    public const int MaxKey = 512;

    /// <summary>The cursor as a URL-safe token.</summary>
    public string Encode() => Convert.ToBase64String(Encoding.UTF8.GetBytes(Mac + "|" + Key)).TrimEnd('=').Replace('+', '-').Replace('/', '_');

    /// <summary>Reads a token of <see cref="Encode"/>; null when it is not one (altered, truncated, foreign).</summary>
    public static UnitCursor? Decode(string? token)
    {
        if (token is null || token.Length is 0 or > 2 * MaxKey || !token.All(c => char.IsAsciiLetterOrDigit(c) || c is '-' or '_')) { return null; }
        var b64 = token.Replace('-', '+').Replace('_', '/');
        b64 += new string('=', (4 - b64.Length % 4) % 4);
        string text;
        try
        {
            text = new UTF8Encoding(false, throwOnInvalidBytes: true).GetString(Convert.FromBase64String(b64));
        }
        catch (FormatException)
        {
            return null; // not base64 (e.g. a length of 4n+1)
        }
        catch (DecoderFallbackException)
        {
            return null; // not UTF-8
        }
        if (text.Length < 18 || text[17] != '|' || !Protocol.MacAddress.TryNormalize(text[..17], out var mac) || mac != text[..17]) { return null; }
        var key = text[18..];
        return key.Length <= MaxKey && !key.Any(char.IsControl) ? new UnitCursor(key, mac) : null;
    }
}

/// <summary>
/// One page of the unit list: filters (each optional) and the order. <paramref name="MacFragment"/> is hex digits
/// (separators removed, lower case) that the MAC contains; <paramref name="NoPattern"/> asks for units on no pattern.
/// </summary>
public sealed record UnitPageQuery(
    string? MacFragment = null, string? Serial = null, string? Subscriber = null, string? Pattern = null, bool NoPattern = false,
    string? State = null, UnitSort Sort = UnitSort.Mac, bool Descending = false, UnitCursor? After = null, int Limit = 50, string? Domain = null);

/// <summary>A unit as the list shows it: a narrow read (the inventory document is not read).</summary>
public sealed class UnitListRow
{
    public string Mac { get; set; } = "";
    public string Serial { get; set; } = "";
    public string State { get; set; } = "";
    public string? Pattern { get; set; }
    public string? Subscriber { get; set; }
    public long Online { get; set; }
    public string? LastSeen { get; set; }
    public string? LastError { get; set; }
    public string? DecommissionedAt { get; set; }
    public string SortKey { get; set; } = "";
}

/// <summary>A page of units, the cursor of the next page (null on the last), and how many units match in all.</summary>
public sealed record UnitPage(IReadOnlyList<UnitListRow> Rows, UnitCursor? Next, long Matching);

/// <summary>The fleet overview's counts (<see cref="PageStore.CountUnitsAsync"/>); <see cref="OnPattern"/> is the units on a pattern now.</summary>
public sealed record UnitCounts(long Total, long Online, IReadOnlyList<(string? Pattern, long Count)> ByPattern, IReadOnlyList<(string State, long Count)> ByState)
{
    public long OnPattern(string pattern) => ByPattern.Where(p => p.Pattern == pattern).Sum(p => p.Count);
}

/// <summary>A page of the audit log, newest first, and the id the next (older) page starts below (null on the last).</summary>
public sealed record AuditPage(IReadOnlyList<AuditRow> Rows, long? Before);

/// <summary>Paged reads for the console: the unit list and the audit log at fleet scale.</summary>
public sealed class PageStore
{
    private readonly TsunaguStore _store;

    internal PageStore(TsunaguStore store) => _store = store;

    /// <summary>The most rows one page may have.</summary>
    public const int MaxPageSize = 500;

    private static string SortColumn(UnitSort sort) => sort switch
    {
        UnitSort.Mac => "mac",
        UnitSort.Serial => "serial",
        UnitSort.State => "state",
        UnitSort.Pattern => "COALESCE(pattern, '')",
        UnitSort.Subscriber => "COALESCE(subscriber, '')",
        UnitSort.LastSeen => "COALESCE(last_seen, '')",
        _ => throw new ArgumentOutOfRangeException(nameof(sort), sort, "not a unit list order"),
    };

    private const string UnitPageFilter = """
        (@MacLike IS NULL OR REPLACE(mac, ':', '') LIKE @MacLike) AND (@Serial IS NULL OR serial = @Serial)
          AND (@Subscriber IS NULL OR subscriber = @Subscriber) AND (@Pattern IS NULL OR pattern = @Pattern)
          AND (@NoPattern = 0 OR pattern IS NULL) AND (@State IS NULL OR state = @State)
          AND (@Domain IS NULL OR LOWER(domain) = @Domain)
        """;

    /// <summary>
    /// The query of one page of units: the filters, then (with a cursor) the rows after @CursorKey and @CursorMac in the
    /// order, @Take of them. The order's expression is the sort key the cursor carries. In MAC order the cursor is a
    /// plain range on the primary key, so a page deep in the list is a seek, not a walk from the start.
    /// </summary>
    public static string UnitPageSql(UnitSort sort, bool descending, bool afterCursor)
    {
        var key = SortColumn(sort);
        var (cmp, dir) = descending ? ("<", "DESC") : (">", "ASC");
        var after = !afterCursor ? ""
            : sort == UnitSort.Mac ? $"AND mac {cmp} @CursorMac"
            : $"AND ({key} {cmp} @CursorKey OR ({key} = @CursorKey AND mac {cmp} @CursorMac))";
        return $"""
            SELECT mac, serial, state, pattern, subscriber, online, last_seen, last_error, decommissioned_at, {key} AS sort_key
            FROM units
            WHERE {UnitPageFilter}
              {after}
            ORDER BY {key} {dir}, mac {dir}
            LIMIT @Take
            """;
    }

    /// <summary>
    /// One page of units in <see cref="UnitPageQuery.Sort"/> order (MAC as tie-breaker), starting after
    /// <see cref="UnitPageQuery.After"/>, with the count of all matching units.
    /// </summary>
    public async Task<UnitPage> QueryUnitPageAsync(UnitPageQuery q, CancellationToken ct = default)
    {
        if (q.Limit is < 1 or > MaxPageSize) { throw new ArgumentOutOfRangeException(nameof(q), q.Limit, $"page size must be 1..{MaxPageSize}"); }
        if (q.MacFragment is { } f && (f.Length is 0 or > 12 || !f.All(char.IsAsciiHexDigit))) { throw new ArgumentException($"MAC fragment '{f}' is not 1-12 hex digits", nameof(q)); }
        var args = new
        {
            MacLike = q.MacFragment is { } m ? "%" + m.ToLowerInvariant() + "%" : null,
            q.Serial, q.Subscriber, q.Pattern, NoPattern = q.NoPattern ? 1 : 0, q.State, Domain = q.Domain?.ToLowerInvariant(),
            CursorKey = q.After?.Key ?? "", CursorMac = q.After?.Mac ?? "",
            Take = q.Limit + 1,
        };
        await using var c = await _store.OpenAsync(ct);
        var rows = (await c.QueryAsync<UnitListRow>(new CommandDefinition(UnitPageSql(q.Sort, q.Descending, q.After is not null), args, cancellationToken: ct))).ToList();
        var matching = await c.ExecuteScalarAsync<long>(new CommandDefinition($"SELECT COUNT(*) FROM units WHERE {UnitPageFilter}", args, cancellationToken: ct));
        UnitCursor? next = null;
        if (rows.Count > q.Limit)
        {
            rows.RemoveAt(rows.Count - 1);
            next = new UnitCursor(rows[^1].SortKey, rows[^1].Mac);
        }
        return new UnitPage(rows, next, matching);
    }

    /// <summary>
    /// The fleet overview's counts in one grouped read of the units (one row per pattern and state, never a row per
    /// unit): all units, those online now, and units by install pattern (null: on none) and by state, most first.
    /// </summary>
    public async Task<UnitCounts> CountUnitsAsync(CancellationToken ct = default)
    {
        await using var c = await _store.OpenAsync(ct);
        var groups = (await c.QueryAsync<(string? Pattern, string State, long Count, long Online)>(new CommandDefinition(
            "SELECT pattern, state, COUNT(*), COUNT(CASE WHEN online <> 0 THEN 1 END) FROM units GROUP BY pattern, state", cancellationToken: ct))).ToList();
        return new UnitCounts(groups.Sum(g => g.Count), groups.Sum(g => g.Online),
            [.. groups.GroupBy(g => g.Pattern).Select(p => (p.Key, p.Sum(g => g.Count))).OrderByDescending(p => p.Item2).ThenBy(p => p.Key, StringComparer.Ordinal)],
            [.. groups.GroupBy(g => g.State).Select(s => (s.Key, s.Sum(g => g.Count))).OrderByDescending(s => s.Item2).ThenBy(s => s.Key, StringComparer.Ordinal)]);
    }

    /// <summary>The successful reports of one update, oldest first.</summary>
    public async Task<IReadOnlyList<string>> ListSuccessfulUpdateTimesAsync(string updateId, CancellationToken ct = default)
    {
        await using var c = await _store.OpenAsync(ct);
        return (await c.QueryAsync<string>(new CommandDefinition("SELECT at FROM update_reports WHERE update_id = @updateId AND success = 1 ORDER BY at", new { updateId }, cancellationToken: ct))).ToList();
    }

    /// <summary>
    /// The query of one page of the audit log, newest first: only the filters <paramref name="q"/> has, so that each
    /// can be served by its index (an "@x IS NULL OR" filter can use none). With a unit, the page is read through
    /// <c>audit_units</c> by key, the other filters applied to the entries it names.
    /// </summary>
    public static string AuditPageSql(AuditQuery q)
    {
        var where = new List<string>();
        if (q.Unit is not null) { where.Add("u.mac = @Unit"); }
        var id = q.Unit is not null ? "u.audit_id" : "a.id";
        if (q.Before is not null) { where.Add($"{id} < @Before"); }
        if (q.Actor is not null) { where.Add("a.actor = @Actor"); }
        if (q.Action is not null) { where.Add("a.action = @Action"); }
        if (q.Target is not null) { where.Add("a.target = @Target"); }
        if (q.From is not null) { where.Add("a.at >= @FromAt"); }
        if (q.To is not null) { where.Add("a.at < @ToAt"); }
        var from = q.Unit is not null ? "audit_units u JOIN audit a ON a.id = u.audit_id" : "audit a";
        return $"""
            SELECT a.id, a.at, a.actor, a.action, a.target, a.detail FROM {from}
            {(where.Count > 0 ? "WHERE " + string.Join(" AND ", where) : "")}
            ORDER BY {id} DESC LIMIT @Take
            """;
    }

    /// <summary>The parameters of <see cref="AuditPageSql"/> for <paramref name="q"/>.</summary>
    public static object AuditPageArgs(AuditQuery q) => new
    {
        q.Unit, q.Before, q.Actor, q.Action, q.Target,
        FromAt = q.From is { } f ? TsunaguStore.Timestamp(f) : null, ToAt = q.To is { } t ? TsunaguStore.Timestamp(t) : null, Take = q.Limit + 1,
    };

    /// <summary>
    /// One page of the audit log, newest first, below id <see cref="AuditQuery.Before"/> (null: from the newest),
    /// filtered by actor, action, target (each exact), the unit an entry names, and time (each optional).
    /// </summary>
    public async Task<AuditPage> QueryAuditPageAsync(AuditQuery q, CancellationToken ct = default)
    {
        if (q.Limit is < 1 or > AuditQuery.MaxLimit) { throw new ArgumentOutOfRangeException(nameof(q), q.Limit, $"page size must be 1..{AuditQuery.MaxLimit}"); }
        await using var c = await _store.OpenAsync(ct);
        var rows = (await c.QueryAsync<AuditRow>(new CommandDefinition(AuditPageSql(q), AuditPageArgs(q), cancellationToken: ct))).ToList();
        long? next = null;
        if (rows.Count > q.Limit)
        {
            rows.RemoveAt(rows.Count - 1);
            next = rows[^1].Id;
        }
        return new AuditPage(rows, next);
    }
}

/// <summary>
/// Filters and position of one page of the audit log (<see cref="PageStore.QueryAuditPageAsync"/>); every filter is
/// optional. <see cref="Unit"/>: a MAC (normalized) the entry names; <see cref="From"/> inclusive, <see cref="To"/>
/// exclusive; <see cref="Before"/>: the page starts below this entry id (keyset paging).
/// </summary>
public sealed record AuditQuery(string? Actor = null, string? Action = null, string? Target = null, string? Unit = null,
    DateTimeOffset? From = null, DateTimeOffset? To = null, long? Before = null, int Limit = 100)
{
    /// <summary>The most entries one page may have.</summary>
    public const int MaxLimit = 10_000;
}

/// <summary>
/// The units an audit entry names: its actor when that is a unit, and its target or each unit of a target listing units
/// (comma-separated, with or without spaces after the commas).
/// </summary>
public static class AuditUnits
{
    public static IReadOnlyList<string> Named(string actor, string? target)
    {
        var named = new List<string>();
        if (IsMac(actor)) { named.Add(actor); }
        if (target is not null)
        {
            named.AddRange(target.Split(',', StringSplitOptions.TrimEntries).Where(IsMac));
        }
        return named.Distinct(StringComparer.Ordinal).ToList();
    }

    /// <summary>A MAC as the store writes it (lower-case hex pairs and colons); anything else (a serial of 12 hex digits) is not read as one.</summary>
    private static bool IsMac(string value) =>
        value.Length == 17 && Protocol.MacAddress.TryNormalize(value, out var mac) && mac == value;
}
