using Microsoft.AspNetCore.OpenApi;
using Microsoft.OpenApi;
using Tsunagu.Protocol;

namespace Tsunagu.Server.Apis;

/// <summary>
/// The OpenAPI document's security: the schemes (operator Basic, bearer tokens of each scope), which one each
/// operation needs, the operator roles it allows, and the refusals every operation can answer (400, 401, 403, 415, 429, 503 as problem details).
/// </summary>
public static class OpenApiSecurity
{
    /// <summary>The operation's extension that lists the operator roles allowed to call it.</summary>
    public const string RolesExtension = "x-tsunagu-roles";

    public static OpenApiOptions AddTsunaguSecurity(this OpenApiOptions options)
    {
        options.AddDocumentTransformer((document, _, _) =>
        {
            document.Components ??= new OpenApiComponents();
            document.Components.SecuritySchemes ??= new Dictionary<string, IOpenApiSecurityScheme>();
            document.Components.SecuritySchemes["operatorBasic"] = new OpenApiSecurityScheme
            {
                Type = SecuritySchemeType.Http, Scheme = "basic",
                Description = "operator name and password; limited per account and source (429), hashed a few at a time (503)",
            };
            document.Components.SecuritySchemes["bearer"] = new OpenApiSecurityScheme
            {
                Type = SecuritySchemeType.Http, Scheme = "bearer",
                Description = "a scoped token: operator (POST /api/v1/operator/token), subscriber (POST /api/v1/subscriber/token), provisional or host (a unit's session)",
            };
            return Task.CompletedTask;
        });
        options.AddOperationTransformer((operation, context, _) =>
        {
            var path = "/" + (context.Description.RelativePath ?? "").TrimStart('/');
            var method = context.Description.HttpMethod ?? "GET";
            var anonymous = path is Routes.ProvisioningChallenge or Routes.ProvisioningSession or Routes.HostChallenge or Routes.HostSession
                or Routes.Prefix + "/subscriber/token" || !path.StartsWith(Routes.Prefix, StringComparison.Ordinal);
            var unitOrSubscriber = path.StartsWith(Routes.Prefix + "/host/", StringComparison.Ordinal) || path.StartsWith(Routes.Prefix + "/provisioning/", StringComparison.Ordinal)
                || path.StartsWith(Routes.Prefix + "/subscriber/", StringComparison.Ordinal);
            operation.Responses ??= new OpenApiResponses();
            void Add(string status, string description) => operation.Responses.TryAdd(status, new OpenApiResponse { Description = description });
            Add("400", "invalid request: a problem document whose detail names the field");
            if (!anonymous)
            {
                Add("401", "no credentials, wrong credentials, or a token that expired or whose account changed its password or was disabled");
                Add("403", unitOrSubscriber ? "a token of another scope" : "a token of another scope, or an operator whose role the operation does not allow");
                operation.Security =
                [
                    unitOrSubscriber
                        ? new OpenApiSecurityRequirement { [new OpenApiSecuritySchemeReference("bearer", context.Document)] = [] }
                        : new OpenApiSecurityRequirement { [new OpenApiSecuritySchemeReference("operatorBasic", context.Document)] = [] },
                    .. unitOrSubscriber ? Array.Empty<OpenApiSecurityRequirement>()
                        : [new OpenApiSecurityRequirement { [new OpenApiSecuritySchemeReference("bearer", context.Document)] = [] }],
                ];
            }
            // the operator roles that may call it (Security.OperatorAccess): listed for clients and for the role tests
            if (context.Description.ActionDescriptor.EndpointMetadata.OfType<Security.OperatorAccess>().LastOrDefault() is { } access)
            {
                operation.Extensions ??= new Dictionary<string, IOpenApiExtension>();
                operation.Extensions[RolesExtension] = new JsonNodeExtension(new System.Text.Json.Nodes.JsonArray(access.Roles.Select(r => (System.Text.Json.Nodes.JsonNode)r).ToArray()));
                operation.Description = (operation.Description is { Length: > 0 } d ? d + "\n\n" : "") + "Operator roles: " + string.Join(", ", access.Roles) + ".";
            }
            if (!HttpMethods.IsGet(method) && path.StartsWith(Routes.Prefix, StringComparison.Ordinal))
            {
                Add("415", "a state-changing call without a JSON, CSV or octet-stream body and without the X-Tsunagu-Client header");
            }
            Add("429", "too many attempts (password or unit authentication); Retry-After says when to come back");
            Add("503", "the server is at capacity or its database is busy; Retry-After says when to come back");
            return Task.CompletedTask;
        });
        return options;
    }
}
