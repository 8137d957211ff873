using Tsunagu.Protocol;
using Tsunagu.Server.Data;
using Tsunagu.Server.Security;

namespace Tsunagu.Server.Apis;

/// <summary>The audit log: who changed what, newest first.</summary>
public static class AuditApi
{
    public static void MapAuditApi(this IEndpointRouteBuilder app)
    {
        var api = app.MapGroup(Routes.Prefix).AddEndpointFilter<RequireOperator>().WithTags("Audit");

        api.MapGet("/audit", (TsunaguStore store, int? limit, string? actor, string? target) =>
            TypedResults.Ok(store.ListAudit(Math.Clamp(limit ?? 200, 1, 10_000), actor, target))).AllowRoles(OperatorRoles.Oversight);
    }
}
