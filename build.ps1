# Thin wrapper over the same dotnet steps as the Makefile, for hosts without make.
param([ValidateSet("build", "test", "run")][string]$Target = "build", [int]$Units = 5)
$ErrorActionPreference = "Stop"
dotnet restore Tsunagu.slnx
dotnet build Tsunagu.slnx -c Release --no-restore
if ($Target -eq "test") {
    # as `make test`: every test but the long ones (`make test-long`)
    dotnet test Tsunagu.slnx -c Release --no-build --filter "TestCategory!=long" --logger trx --results-directory TestResults
}
elseif ($Target -eq "run") {
    dotnet tools/Tsunagu.Cli/bin/Release/net10.0/tsunagu.dll demo --units $Units
}
