using Tsunagu.Firmware.Supervision;
using Tsunagu.Protocol;

namespace Tsunagu.Firmware.Updates;

/// <summary>
/// The install manager's part of patent 0037: when a medium is inserted, compute its digest and ask the host
/// whether it is genuine. A genuine medium becomes a local source of bundles; any other is ejected.
/// </summary>
public static class InstallMediaCheck
{
    /// <summary>Whether a medium is inserted that the unit has not checked yet (<see cref="CheckAsync"/> would ask the host).</summary>
    public static bool Unchecked(SupervisorContext ctx) => ctx.Hardware.Media?.ImagePath is { } path && ctx.Medium?.ImagePath != path;

    /// <exception cref="Net.ServerException">The host could not be asked (the medium is asked about again next time).</exception>
    public static async Task CheckAsync(SupervisorContext ctx, CancellationToken ct)
    {
        var media = ctx.Hardware.Media;
        var path = media?.ImagePath;
        if (media is null || path is null)
        {
            ctx.Medium = null;
            return;
        }
        if (!Unchecked(ctx))
        {
            return;
        }
        MediaIndex index;
        string digest;
        try
        {
            await using var image = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, 81920, useAsync: true);
            (index, digest) = await MediaImage.InspectAsync(image, ct);
        }
        catch (Exception e) when (e is MediaFormatException or IOException or UnauthorizedAccessException)
        {
            Reject(ctx, media, $"install medium {path} is unreadable: {e.Message}");
            return;
        }
        var answer = await ctx.RequireClient().CheckMediumAsync(ctx.HostUri, ctx.HostToken, digest, ct);
        if (!answer.Genuine)
        {
            Reject(ctx, media, $"install medium '{index.Name}' (digest {digest}) is not genuine according to the host");
            return;
        }
        ctx.Medium = new VerifiedMedium(path, digest, index);
        ctx.Log($"install medium '{answer.Name ?? index.Name}' is genuine: {index.Bundles.Count} bundle(s) can be installed from it");
    }

    private static void Reject(SupervisorContext ctx, Hal.IRemovableMedia media, string reason)
    {
        ctx.Medium = null;
        ctx.LastError = reason;
        ctx.Log($"{reason}; ejecting it");
        media.Eject(reason);
    }
}
