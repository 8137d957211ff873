using System.Text.Json;
using Tsunagu.Protocol;

namespace Tsunagu.Firmware.Services;

/// <summary>
/// Applies a service configuration on `data`: render into `services/rev-N/` beside the running one, then switch
/// the `services/current` link with one rename. A configuration that fails validation never replaces the
/// running one.
/// </summary>
public sealed class ServiceApplier(string dataRoot)
{
    public string Root { get; } = Path.Combine(dataRoot, "services");

    /// <summary>The revision `current` points to, or null when no configuration is in force.</summary>
    public int? CurrentRevision()
    {
        var link = new FileInfo(Path.Combine(Root, "current"));
        return link.LinkTarget is { } target && target.StartsWith("rev-", StringComparison.Ordinal) &&
               int.TryParse(target.AsSpan(4), out var revision) && Directory.Exists(Path.Combine(Root, target))
            ? revision
            : null;
    }

    /// <exception cref="InvalidServiceConfigException">The configuration is invalid; nothing was changed.</exception>
    public void Apply(int revision, ServiceConfiguration configuration)
    {
        var files = ServiceRenderer.Render(configuration);
        Directory.CreateDirectory(Root);
        var name = $"rev-{revision}";
        var staging = Path.Combine(Root, $".staging-{revision}-{Guid.NewGuid():N}");
        Directory.CreateDirectory(staging);
        foreach (var (file, content) in files)
        {
            File.WriteAllText(Path.Combine(staging, file), content);
        }
        File.WriteAllText(Path.Combine(staging, "configuration.json"),
            JsonSerializer.Serialize(configuration, ProtocolJson.Default.ServiceConfiguration));
        var final = Path.Combine(Root, name);
        if (Directory.Exists(final))
        {
            Directory.Delete(final, recursive: true);
        }
        Directory.Move(staging, final);
        Storage.AtomicLink.Point(Path.Combine(Root, "current"), name);
        foreach (var old in Directory.GetDirectories(Root, "rev-*").Where(d => Path.GetFileName(d) != name))
        {
            Directory.Delete(old, recursive: true);
        }
    }
}
