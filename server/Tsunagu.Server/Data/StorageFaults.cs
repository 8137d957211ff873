using System.Globalization;
using Tsunagu.Protocol;

namespace Tsunagu.Server.Data;

/// <summary>
/// A full disk is a fault of the server's storage, not of the request: the request is answered 507 (Insufficient
/// Storage) with a Retry-After and a problem that names the resource that is full (the database, the artifact
/// store), and nothing is kept of it. Nothing is latched: the next request after space is freed works again.
/// </summary>
public static class StorageFaults
{
    public const string ProblemType = ProblemTypes.Prefix + "storage-full";
    public const int RetryAfterSeconds = 60;

    private const int Enospc = 28, Edquot = 122;

    /// <summary>Which storage is full, when <paramref name="e"/> (or an exception inside it) says a disk is full; else null.</summary>
    public static string? FullResource(Exception e, string dataDirectory)
    {
        for (var x = e; x is not null; x = x.InnerException)
        {
            switch (x)
            {
                case Microsoft.Data.Sqlite.SqliteException s when s.SqliteErrorCode == 13: // SQLITE_FULL
                    return "the database (SQLite)";
                case Npgsql.PostgresException p when p.SqlState is "53100": // disk_full
                    return "the database (PostgreSQL)";
                case IOException io when (io.HResult & 0xFFFF) is Enospc or Edquot || IsNoSpaceMessage(io.Message):
                    return $"the data directory {dataDirectory}";
            }
        }
        return null;
    }

    // .NET reports ENOSPC from a FileStream as an IOException whose HResult is not always the errno; the message is
    // the C library's strerror text
    private static bool IsNoSpaceMessage(string message) =>
        message.Contains("No space left on device", StringComparison.Ordinal) || message.Contains("Disk quota exceeded", StringComparison.Ordinal);

    public static IApplicationBuilder UseStorageFaultAnswers(this IApplicationBuilder app, string dataDirectory) => app.Use(async (http, next) =>
    {
        try
        {
            await next(http);
        }
        catch (Exception e) when (!http.Response.HasStarted && FullResource(e, dataDirectory) is { } resource)
        {
            http.RequestServices.GetRequiredService<ILoggerFactory>().CreateLogger("Tsunagu.Server.StorageFull")
                .LogError("{Method} {Path}: {Resource} is full ({Error}); answered 507", http.Request.Method, http.Request.Path, resource, e.Message);
            http.Response.Clear();
            http.Response.StatusCode = StatusCodes.Status507InsufficientStorage;
            http.Response.Headers.RetryAfter = RetryAfterSeconds.ToString(CultureInfo.InvariantCulture);
            await http.Response.WriteAsJsonAsync(new ProblemBody(ProblemType, "Storage full", 507,
                $"{resource} has no space left; nothing of this request was kept. Free space on the server and retry."), ProtocolJson.Default.ProblemBody);
        }
    });
}
