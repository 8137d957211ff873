# Tsunagu: the real entry point. `make run` for the demo, `make test` for every test.
SHELL := /bin/bash
CONFIGURATION ?= Release
UNITS ?= 5
PORT ?= 8443
MQTT_PORT ?= 1883
CHECK_INTERVAL ?= 300
DEMO_DATA ?= .tsunagu/demo
RESULTS ?= TestResults
DOTNET ?= dotnet
CLI := tools/Tsunagu.Cli/bin/$(CONFIGURATION)/net10.0/tsunagu.dll

.PHONY: all deps restore build test unit-test integration-test run clean

all: build

# What the build and the tests need on a fresh machine of this kind: the .NET 10 SDK, node + npm (the console's
# chart library), Debian's chromium (the browser tests; .ci/run installs it).
deps:
	@command -v npm >/dev/null || { echo "error: npm is not installed; the server build installs the console's chart library with it" >&2; exit 1; }
	@command -v $(DOTNET) >/dev/null || { echo "error: the .NET 10 SDK ('dotnet') is not installed; see README.md" >&2; exit 1; }
	@$(DOTNET) --list-sdks | grep -q '^10\.' || { echo "error: a .NET 10 SDK is required; found: $$($(DOTNET) --list-sdks)" >&2; exit 1; }

restore: deps
	$(DOTNET) restore Tsunagu.slnx

build: restore
	$(DOTNET) build Tsunagu.slnx -c $(CONFIGURATION) --no-restore

# Every test; TRX results land in $(RESULTS)/ (one file per test project).
test: build
	rm -rf $(RESULTS)
	$(DOTNET) test Tsunagu.slnx -c $(CONFIGURATION) --no-build --logger "trx" --logger "console;verbosity=normal" --results-directory $(RESULTS)

unit-test: build
	$(DOTNET) test tests/Tsunagu.UnitTests -c $(CONFIGURATION) --no-build

integration-test: build
	$(DOTNET) test tests/Tsunagu.IntegrationTests -c $(CONFIGURATION) --no-build

# The server (both roles, SQLite, embedded MQTT) with the demo catalogue and $(UNITS) simulated units.
run: build
	$(DOTNET) $(CLI) demo --units $(UNITS) --port $(PORT) --mqtt-port $(MQTT_PORT) --check-interval $(CHECK_INTERVAL) --data $(DEMO_DATA)

clean:
	$(DOTNET) clean Tsunagu.slnx -c $(CONFIGURATION) >/dev/null
	rm -rf $(RESULTS) .tsunagu
