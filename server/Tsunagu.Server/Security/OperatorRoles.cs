namespace Tsunagu.Server.Security;

/// <summary>
/// The role of an operator account: what it may do on the API, the CLI and the console. Each account has one.
/// <list type="bullet">
/// <item><see cref="Administrator"/>: everything, and the only role that manages operator accounts and roles.</item>
/// <item><see cref="ReleaseManager"/>: the catalogue (software, patches, patterns, update programs, bundles, media), units' target patterns, forced checks, the update policy.</item>
/// <item><see cref="Support"/>: reads units, forces checks, helps subscribers (accounts) and changes a unit's service configuration.</item>
/// <item><see cref="Auditor"/>: reads everything, the audit log and the operator accounts included; changes nothing.</item>
/// </list>
/// </summary>
public static class OperatorRoles
{
    public const string Administrator = "administrator";
    public const string ReleaseManager = "release-manager";
    public const string Support = "support";
    public const string Auditor = "auditor";

    /// <summary>Every role, most powerful first.</summary>
    public static readonly IReadOnlyList<string> All = [Administrator, ReleaseManager, Support, Auditor];

    public static bool IsRole(string? role) => role is not null && All.Contains(role, StringComparer.Ordinal);

    // the decisions the operator endpoints and console pages use (administrators may do everything)

    /// <summary>Reading the fleet, the catalogue, settings: every role.</summary>
    public static readonly OperatorAccess Read = new(Administrator, ReleaseManager, Support, Auditor);

    /// <summary>The catalogue, targets and rollouts.</summary>
    public static readonly OperatorAccess Release = new(Administrator, ReleaseManager);

    /// <summary>Subscriber help and a unit's own configuration.</summary>
    public static readonly OperatorAccess Help = new(Administrator, Support);

    /// <summary>Making units check now (a rollout, or a support call).</summary>
    public static readonly OperatorAccess Check = new(Administrator, ReleaseManager, Support);

    /// <summary>What only those who read everything may read: the audit log, the operator accounts.</summary>
    public static readonly OperatorAccess Oversight = new(Administrator, Auditor);

    /// <summary>Operator accounts and roles, the device management table, contracts.</summary>
    public static readonly OperatorAccess Administration = new(Administrator);
}

/// <summary>
/// The roles that may call an operator endpoint (endpoint metadata) or use a console page or action (an attribute of
/// its page model or handler). An operator endpoint without one refuses every operator (<see cref="RequireOperator"/>).
/// </summary>
[AttributeUsage(AttributeTargets.Class | AttributeTargets.Method, AllowMultiple = false)]
public class OperatorAccess(params string[] roles) : Attribute
{
    public IReadOnlyList<string> Roles { get; } = roles.Length > 0 && roles.All(OperatorRoles.IsRole)
        ? roles
        : throw new ArgumentException($"roles: each of {string.Join(", ", roles)} must be one of {string.Join(", ", OperatorRoles.All)}", nameof(roles));

    public bool Allows(string? role) => role is not null && Roles.Contains(role, StringComparer.Ordinal);
}

/// <summary>Console pages and actions: who may use them (the page model's class for viewing, a handler for its action).</summary>
public sealed class ConsoleAccessAttribute(params string[] roles) : OperatorAccess(roles);

public static class OperatorAccessExtensions
{
    /// <summary>The roles that may call these endpoints (the endpoint's own decision wins over its group's).</summary>
    public static TBuilder AllowRoles<TBuilder>(this TBuilder builder, OperatorAccess access) where TBuilder : IEndpointConventionBuilder =>
        builder.WithMetadata(access);
}
