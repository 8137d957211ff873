using Tsunagu.Protocol;
using Tsunagu.Server.Data;

namespace Tsunagu.Server.Units.Registration;

/// <summary>The outcome of checking a CSV device management table: a file-level error, or one result per row.</summary>
/// <remarks><see cref="Tags"/>: the tags column of each valid row that has tags (<see cref="Fleet.Tags"/>).</remarks>
public sealed record BulkCheck(string? FileError, IReadOnlyList<BulkRowResult> Rows, IReadOnlyList<UnitRow> Valid,
    IReadOnlyDictionary<string, IReadOnlyList<string>>? Tags = null)
{
    public bool CanCommit => FileError is null && Valid.Count > 0 && Rows.All(r => r.Error is null);
}

/// <summary>
/// The device management table as a CSV file (patent fig. 6): its columns, and the check of every row against the
/// registration rules (<see cref="UnitRegistration.ValidateAsync"/>) before anything is written.
/// </summary>
public static class DeviceTable
{
    /// <summary>Largest CSV device management table accepted (bytes); larger ones get 413.</summary>
    public const long MaxBytes = 16L * 1024 * 1024;

    /// <summary>The CSV columns of the device management table (patent fig. 6), in order; a header row names them.</summary>
    public static readonly string[] Columns =
        ["mac", "serial", "hardware_version", "isp_method", "isp_username", "isp_password", "ip_address", "isp_gateway", "isp_dns", "domain", "vpn",
         "global_ip", "subscriber", "target_pattern", "tags"];

    /// <summary>Checks every row of a CSV device management table against the registration rules; writes nothing.</summary>
    public static async Task<BulkCheck> CheckAsync(string text, TsunaguStore store, CancellationToken ct = default)
    {
        List<List<string>> rows;
        try
        {
            rows = Csv.Parse(text);
        }
        catch (FormatException e)
        {
            return new($"csv: {e.Message}", [], []);
        }
        if (rows.Count == 0) { return new("csv: empty; the first line must be the header " + string.Join(',', Columns), [], []); }
        var header = rows[0].Select(h => h.Trim().ToLowerInvariant()).ToList();
        var unknown = header.Where(h => !Columns.Contains(h)).ToList();
        if (unknown.Count > 0 || !header.Contains("mac") || !header.Contains("serial"))
        {
            return new($"csv header: {(unknown.Count > 0 ? $"unknown column(s) {string.Join(", ", unknown)}" : "mac and serial are required")}; columns are {string.Join(',', Columns)}", [], []);
        }
        string? Cell(List<string> row, string column)
        {
            var i = header.IndexOf(column);
            return i < 0 || i >= row.Count || string.IsNullOrWhiteSpace(row[i]) ? null : row[i].Trim();
        }
        var results = new List<BulkRowResult>();
        var valid = new List<UnitRow>();
        var seen = new HashSet<string>();
        var tags = new Dictionary<string, IReadOnlyList<string>>(StringComparer.Ordinal);
        for (var i = 1; i < rows.Count; i++)
        {
            var row = rows[i];
            var line = i + 1;
            if (row.Count > header.Count) { results.Add(new(line, null, $"{row.Count} fields, the header has {header.Count}")); continue; }
            var req = new RegisterUnitRequest(Cell(row, "mac") ?? "", Cell(row, "serial") ?? "", Cell(row, "hardware_version") ?? "r1",
                new WanAccount(Cell(row, "isp_method") ?? "dhcp", Cell(row, "isp_username"), Cell(row, "isp_password"), null,
                    Cell(row, "isp_gateway"), UnitRegistration.NameServers(Cell(row, "isp_dns"))),
                Cell(row, "ip_address"), Cell(row, "domain"), Cell(row, "vpn"), Cell(row, "global_ip"), Cell(row, "target_pattern"), Cell(row, "subscriber"));
            var (unit, error) = await UnitRegistration.ValidateAsync(req, store, ct);
            var rowTags = Fleet.Tags.SplitCell(Cell(row, "tags"));
            error ??= Fleet.Tags.Invalid(rowTags);
            if (unit is not null && !seen.Add(unit.Mac)) { error = $"mac: {unit.Mac} appears twice in this file"; }
            else if (unit is not null && await store.Units.GetUnitAsync(unit.Mac, ct) is not null) { error = $"mac: {unit.Mac} is already registered"; }
            results.Add(new(line, unit?.Mac ?? Cell(row, "mac"), error));
            if (error is null && unit is not null)
            {
                valid.Add(unit);
                if (rowTags.Count > 0) { tags[unit.Mac] = Fleet.Tags.Normal(rowTags); }
            }
        }
        return new(null, results, valid, tags);
    }
}
