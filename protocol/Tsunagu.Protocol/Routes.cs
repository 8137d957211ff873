namespace Tsunagu.Protocol;

/// <summary>Every HTTP path of the wire contract; docs/protocol.md describes each.</summary>
public static class Routes
{
    public const string Prefix = "/api/v1";

    // initial setting server
    public const string ProvisioningChallenge = Prefix + "/provisioning/challenge";
    public const string ProvisioningSession = Prefix + "/provisioning/session";
    public const string ProvisioningSettings = Prefix + "/provisioning/settings";

    // host server
    public const string HostChallenge = Prefix + "/host/challenge";
    public const string HostSession = Prefix + "/host/session";
    public const string VersionCheck = Prefix + "/host/version-check";
    public const string UpdateReport = Prefix + "/host/update-report";
    public const string Artifacts = Prefix + "/host/artifacts";
    public const string ServiceConfig = Prefix + "/host/service-config";
    public const string ServiceConfigAck = Prefix + "/host/service-config/ack";
    public const string Ready = Prefix + "/host/ready";
    public const string SteadyCheck = Prefix + "/host/steady-check";
    public const string MediaCheck = Prefix + "/host/media/check";

    // both roles: liveness, no authentication (the unit's post-update health check uses it)
    public const string Health = "/healthz";

    // operator
    public const string Units = Prefix + "/units";
    public const string ForceCheck = Prefix + "/units/check";
    public const string Media = Prefix + "/media";
}
