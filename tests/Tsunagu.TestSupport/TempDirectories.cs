namespace Tsunagu.IntegrationTests;

/// <summary>Fresh directories under the system's temporary directory, one per test.</summary>
internal static class TempDirectories
{
    /// <summary>Creates <c>tsunagu-PREFIX-XXXXXXXX</c> and returns its path.</summary>
    public static string Create(string prefix)
    {
        var path = Path.Combine(Path.GetTempPath(), $"tsunagu-{prefix}-{Guid.NewGuid().ToString("N")[..8]}");
        Directory.CreateDirectory(path);
        return path;
    }
}
