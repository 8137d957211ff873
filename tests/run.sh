#!/usr/bin/env bash
# `make test`'s run of the test projects (they are built already): the system tests (QEMU guests one after another,
# the longest project) start at once in the background, and every other test project of Tsunagu.slnx runs beside them,
# one after another: two runs at a time, as many as the 2-core build machine has cores, with the longest one never
# waiting for a slot. The system tests of the second board (category "arm64", QEMU's arm64 guests, about 6 min) are
# left to the other side, after its projects, so that both sides end near the same time. Each run writes
# RESULTS/<project>.trx (the arm64 part RESULTS/<project>.arm64.trx; .ci/run sums them). The long tests (category
# "long", `make test-long`) are left out. Exits 1 if any run failed, naming which; Ctrl-C (or TERM, HUP) stops both
# sides at once, each run's whole process group (test hosts, QEMU guests) included, and exits 130.
#
# Environment: DOTNET (dotnet), CONFIGURATION (Release), RESULTS (TestResults).
set -uo pipefail
cd "$(dirname "$0")/.."
DOTNET=${DOTNET:-dotnet}
CONFIGURATION=${CONFIGURATION:-Release}
RESULTS=${RESULTS:-TestResults}
SYSTEM=tests/Tsunagu.SystemTests/Tsunagu.SystemTests.csproj

# every project of the solution under tests/ that is a test project (tests/Directory.Build.props sets IsTestProject;
# a support library turns it off), the system tests apart
mapfile -t projects < <(grep -o 'tests/[^"]*\.csproj' Tsunagu.slnx)
others=()
for p in "${projects[@]}"; do
    [ "$p" = "$SYSTEM" ] && continue
    grep -q '<IsTestProject>false</IsTestProject>' "$p" && continue
    others+=("$p")
done
grep -qxF "$SYSTEM" <(printf '%s\n' "${projects[@]}") || { echo "tests/run.sh: $SYSTEM is not in Tsunagu.slnx" >&2; exit 2; }
[ "${#others[@]}" -gt 0 ] || { echo "tests/run.sh: no other test project in Tsunagu.slnx" >&2; exit 2; }

# each run in a session of its own (setsid): a signal to its process group reaches its test host and the QEMU guests it
# started, and Ctrl-C at the terminal reaches only this script, which stops them
running=()
stop() {
    echo "tests/run.sh: stopping the test runs" >&2
    for pid in "${running[@]}"; do kill -TERM -- "-$pid" 2>/dev/null; done
    for pid in "${running[@]}"; do wait "$pid" 2>/dev/null; done
    exit 130
}
trap stop INT TERM HUP
# run PROJECT NAME [dotnet test arguments]: one run in the background, its results in RESULTS/NAME.trx
run() {
    local project=$1 name=$2; shift 2
    setsid "$DOTNET" test "$project" -c "$CONFIGURATION" --no-build --logger "trx;LogFileName=$name.trx" \
        --logger "console;verbosity=normal" --results-directory "$RESULTS" "$@" &
}

run "$SYSTEM" Tsunagu.SystemTests --filter "TestCategory!=long&TestCategory!=arm64"
system=$!
running=("$system")
failed=()
for p in "${others[@]}" "$SYSTEM"; do
    if [ "$p" = "$SYSTEM" ]; then
        run "$p" Tsunagu.SystemTests.arm64 --filter "TestCategory=arm64"
    else
        run "$p" "$(basename "$p" .csproj)"
    fi
    pid=$!
    running=("$system" "$pid")
    wait "$pid" || failed+=("$(basename "$p" .csproj)$([ "$p" = "$SYSTEM" ] && echo " (arm64)")")
done
running=("$system")
wait "$system" || failed+=("$(basename "$SYSTEM" .csproj)")
trap - INT TERM HUP
if [ "${#failed[@]}" -gt 0 ]; then
    echo "tests/run.sh: failed: ${failed[*]}" >&2
    exit 1
fi
echo "tests/run.sh: every test project passed (${#others[@]} beside the system tests)"
