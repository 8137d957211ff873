using Tsunagu.Cli.Factory;
using Tsunagu.Demo;
using Tsunagu.Protocol;

namespace Tsunagu.IntegrationTests;

/// <summary>The catalogue a rollout test moves units through: pattern 2 (the demo's) to pattern 3.</summary>
public static class RolloutCatalogue
{
    /// <summary>Pattern 3 (vcp 2.0.0) verified, with an update program 2 -> 3 of the importance given (5: now).</summary>
    public static Task AddPattern3Async(TestServer server, OperatorClient client, int importance = 5) =>
        CatalogueSteps.AddPatternAsync(client, new NextPattern(DemoCatalogue.Pattern2, "pattern-3", "vcp 2", "2.0.0", "p2-to-p3", 2, importance),
            server.ReleaseKey, CancellationToken.None);

    /// <summary>Pattern 3's applications: pattern 2's with vcp 2.0.0.</summary>
    public static Dictionary<string, string> Pattern3Applications() => new(DemoCatalogue.Pattern2Applications) { ["vcp"] = "2.0.0" };

    /// <summary>The inventory of a unit that runs pattern 3.</summary>
    public static Inventory Pattern3Inventory() => new(DemoCatalogue.HardwareVersion, DemoCatalogue.OsVersion, Pattern3Applications());

    /// <summary>The way back, pattern 3 -> pattern 2 (a newer bundle carrying the old vcp), of importance 5.</summary>
    public static Task AddWayBackAsync(TestServer server, OperatorClient client) =>
        CatalogueSteps.AddUpdateProgramAsync(client, "p3-to-p2", "pattern-3", DemoCatalogue.Pattern2, 3,
            new Dictionary<string, string> { ["vcp"] = DemoCatalogue.Pattern2Applications["vcp"] }, 5, server.ReleaseKey, CancellationToken.None);
}
