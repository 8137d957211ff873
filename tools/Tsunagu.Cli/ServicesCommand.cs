using System.Text.Json;
using Tsunagu.Firmware.Services;
using Tsunagu.Hal;
using Tsunagu.Protocol;

namespace Tsunagu.Cli;

/// <summary>`tsunagu services render`: what a service configuration renders to on a board, exactly as the unit writes it.</summary>
public static class ServicesCommand
{
    /// <param name="FilterLists">Where the content filter's category lists are read from (a unit's
    /// `DATA/apps/filter-lists/current`); null: that folder under <paramref name="DataDirectory"/>.</param>
    public sealed record Settings(string Configuration, string Board, string BoardsRoot, string Out, string DataDirectory, string RunDirectory,
        string? FilterLists = null);

    /// <returns>0 when rendered; 1 (with a message naming the field or file) otherwise.</returns>
    public static int Render(Settings settings, TextWriter output, TextWriter error)
    {
        try
        {
            var board = BoardDescription.Resolve(settings.Board, settings.BoardsRoot);
            var configuration = Read(settings.Configuration);
            var environment = new ServiceEnvironment(board, settings.RunDirectory, Path.Combine(settings.DataDirectory, "services", "state"))
            {
                // as the unit reads them (BootState): the installed application's tree on its data partition
                FilterListDirectory = settings.FilterLists ?? Path.Combine(settings.DataDirectory, "apps", FilterCategories.Application, "current"),
            };
            var current = Path.Combine(settings.DataDirectory, "services", "current");
            var files = ServiceRenderer.Render(configuration, environment);
            var services = ServiceCatalog.Build(configuration, environment, current, files);
            Directory.CreateDirectory(settings.Out);
            foreach (var (name, content) in files)
            {
                File.WriteAllText(Path.Combine(settings.Out, name), content);
            }
            var plan = new System.Text.StringBuilder();
            plan.Append("# services on board ").Append(board.Name).Append(", in start order; files are read from ").Append(current).Append('\n');
            foreach (var service in services)
            {
                plan.Append('\n').Append(service.Name).Append(" (digest ").Append(service.Digest).Append(")\n");
                foreach (var c in service.Checks) { plan.Append("  check      ").Append(c).Append('\n'); }
                foreach (var c in service.Setup) { plan.Append("  setup      ").Append(c).Append('\n'); }
                if (service.Daemon is { } d) { plan.Append("  daemon     ").Append(d).Append('\n'); }
                foreach (var c in service.Configure) { plan.Append("  configure  ").Append(c).Append('\n'); }
                foreach (var c in service.Probes) { plan.Append("  probe      ").Append(c).Append('\n'); }
            }
            if (configuration.Cache.Enabled && !ServiceRenderer.CacheRuns(configuration, environment))
            {
                plan.Append("\n# cache: enabled, but board ").Append(board.Name).Append(" has no HDD: squid is not run\n");
            }
            if (ServiceRenderer.VirusScanWaits(configuration, environment))
            {
                plan.Append("\n# virus checking: enabled, but no usable signatures in ").Append(environment.SignatureDirectory)
                    .Append(": clamd and c-icap are not run and squid passes downloads unchecked until signatures are installed\n");
            }
            File.WriteAllText(Path.Combine(settings.Out, "services.txt"), plan.ToString());
            foreach (var name in files.Keys.Append("services.txt"))
            {
                output.WriteLine(Path.Combine(settings.Out, name));
            }
            return 0;
        }
        catch (InvalidServiceConfigException e)
        {
            error.WriteLine($"error: {settings.Configuration}: invalid service configuration: {e.Message}");
        }
        catch (Exception e) when (e is HalException or IOException or UnauthorizedAccessException)
        {
            error.WriteLine($"error: {e.Message}");
        }
        return 1;
    }

    private static readonly JsonSerializerOptions Strict = new(JsonSerializerDefaults.Web)
    {
        RespectNullableAnnotations = true,
        RespectRequiredConstructorParameters = true,
        TypeInfoResolver = ProtocolJson.Default,
    };

    private static ServiceConfiguration Read(string path)
    {
        try
        {
            return JsonSerializer.Deserialize<ServiceConfiguration>(File.ReadAllText(path), Strict)
                   ?? throw new InvalidServiceConfigException("(document)", "empty");
        }
        catch (JsonException e)
        {
            throw new InvalidServiceConfigException(e.Path is { Length: > 1 } p ? p.TrimStart('$', '.') : "(document)",
                $"not readable as a service configuration: {e.Message}");
        }
    }
}
