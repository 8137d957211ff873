using Dapper;
using Tsunagu.Protocol;

namespace Tsunagu.Server.Data;

// Registered install media.
public sealed partial class TsunaguStore
{
    // ---- install media -----------------------------------------------------------------------------------

    /// <summary>Registers a medium, with <paramref name="audit"/> (when given) in the same transaction.</summary>
    public void AddMedium(string digest, string name, AuditEntry? audit = null)
    {
        Insert("INSERT INTO media (digest, name, created_at) VALUES (@digest, @name, @now)", new { digest, name, now = Now() }, $"medium {digest} is already registered", audit);
    }

    public MediaRegistration? GetMedium(string digest)
    {
        using var c = Open();
        return c.QuerySingleOrDefault<MediumRow>("SELECT digest, name FROM media WHERE digest = @digest", new { digest }) is { } m
            ? new MediaRegistration(m.Digest, m.Name) : null;
    }

    public IReadOnlyList<MediaRegistration> ListMedia()
    {
        using var c = Open();
        return c.Query<MediumRow>("SELECT digest, name FROM media ORDER BY created_at, digest").Select(m => new MediaRegistration(m.Digest, m.Name)).ToList();
    }
}
