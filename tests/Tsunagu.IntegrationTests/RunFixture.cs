namespace Tsunagu.IntegrationTests;

/// <summary>Stops the services the tests of this namespace share, once they have all run.</summary>
[SetUpFixture]
public sealed class RunFixture
{
    [OneTimeTearDown]
    public void StopServices() => PostgresServer.StopShared();
}
