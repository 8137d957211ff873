using System.Globalization;

namespace Tsunagu.Hal.Linux;

/// <summary>A block device partition: its GPT partition name, device file and size.</summary>
public sealed record BlockPartition(string PartitionName, string DevicePath, long SizeBytes);

/// <summary>
/// Finds partitions by GPT partition name through sysfs: each `SYSBLOCK/NAME/uevent` of a partition holds
/// `DEVNAME=vda3` and `PARTNAME=slot_a`; its `size` file is the size in 512-byte sectors.
/// </summary>
public sealed class BlockDevices(string sysBlockRoot = "/sys/class/block", string devRoot = "/dev")
{
    public string SysBlockRoot { get; } = sysBlockRoot;
    public string DevRoot { get; } = devRoot;

    /// <summary>Every partition that has a GPT name, in device name order.</summary>
    public IReadOnlyList<BlockPartition> List()
    {
        var found = new List<BlockPartition>();
        if (!Directory.Exists(SysBlockRoot)) { return found; }
        foreach (var entry in Directory.EnumerateFileSystemEntries(SysBlockRoot).Order(StringComparer.Ordinal))
        {
            var uevent = Path.Combine(entry, "uevent");
            Dictionary<string, string> keys;
            try
            {
                if (!File.Exists(uevent)) { continue; }
                keys = File.ReadAllLines(uevent).Select(l => l.Split('=', 2)).Where(p => p.Length == 2)
                    .GroupBy(p => p[0], StringComparer.Ordinal).ToDictionary(g => g.Key, g => g.Last()[1].Trim(), StringComparer.Ordinal);
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                continue;
            }
            if (!keys.TryGetValue("PARTNAME", out var name) || name.Length == 0) { continue; }
            var devName = keys.TryGetValue("DEVNAME", out var d) && d.Length > 0 ? d : Path.GetFileName(entry);
            found.Add(new BlockPartition(name, Path.Combine(DevRoot, devName), ReadSize(entry)));
        }
        return found;
    }

    /// <summary>The partition named <paramref name="partitionName"/>.</summary>
    /// <exception cref="HalException">None has that name, or several do (e.g. an install stick with the same layout).</exception>
    public BlockPartition Find(string partitionName)
    {
        var all = List();
        var matches = all.Where(p => p.PartitionName == partitionName).ToList();
        return matches.Count switch
        {
            1 => matches[0],
            0 => throw new HalException($"{SysBlockRoot}: no partition named '{partitionName}'" +
                                        (all.Count == 0 ? " (no named partitions)" : $" (found {string.Join(", ", all.Select(p => $"{p.PartitionName} on {p.DevicePath}"))})"),
                isTransient: false),
            _ => throw new HalException($"{SysBlockRoot}: partition name '{partitionName}' is ambiguous: {string.Join(", ", matches.Select(p => p.DevicePath))}",
                isTransient: false),
        };
    }

    private static long ReadSize(string entry)
    {
        var file = Path.Combine(entry, "size");
        try
        {
            return File.Exists(file) && long.TryParse(File.ReadAllText(file).Trim(), NumberStyles.None, CultureInfo.InvariantCulture, out var sectors)
                ? sectors * 512 : -1;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return -1;
        }
    }
}
