using System.Globalization;

namespace Tsunagu.Server;

/// <summary>The process's limit on open files (its soft limit), which caps how many connections it can hold.</summary>
public static class DescriptorLimit
{
    /// <summary>The "Max open files" soft limit from /proc/self/limits; null when unlimited or not readable (not Linux).</summary>
    public static long? Read(string path = "/proc/self/limits")
    {
        if (!File.Exists(path)) { return null; }
        return Parse(File.ReadAllLines(path));
    }

    /// <summary>The soft limit from the lines of a limits file, e.g. <c>Max open files  20000  20000  files</c>.</summary>
    public static long? Parse(IEnumerable<string> lines)
    {
        foreach (var line in lines)
        {
            if (!line.StartsWith("Max open files", StringComparison.Ordinal)) { continue; }
            var fields = line["Max open files".Length..].Split(' ', StringSplitOptions.RemoveEmptyEntries);
            return fields.Length > 0 && long.TryParse(fields[0], NumberStyles.None, CultureInfo.InvariantCulture, out var soft) ? soft : null;
        }
        return null;
    }
}
