#!/usr/bin/env bash
# `make test`'s run of the test projects (they and the images are built already), on two sides at once, as many as the
# 2-core build machine has cores, so that both end near the same time:
# - one side runs the system tests (the router's daemons in network namespaces, the first board booted in QEMU), the
#   longest run, which never waits for a slot;
# - the other runs every other test project of Tsunagu.slnx one after another, then the checks (CHECKS, `make test`:
#   the layout of the code) and the QEMU tests of SECOND_SIDE: the second board's (category "arm64", QEMU's arm64
#   guests, about 4 min) and the first board's verified boot (VerifiedBootTests, about 3 min), which would otherwise
#   make the first side the longer by that much.
# The images are built before, not beside the tests: a build that shares the cores with the tests is starved by them
# and holds up the longest run. Each run writes RESULTS/<project>.trx (the second board's
# RESULTS/<project>.second.trx; .ci/run sums them). The long tests (category "long", `make test-long`) are left out.
# Exits 1 if any run or step failed, naming which; Ctrl-C (or TERM, HUP) stops both sides at once, each run's whole
# process group (test hosts, QEMU guests) included, and exits 130.
#
# Environment: DOTNET (dotnet), CONFIGURATION (Release), RESULTS (TestResults); CHECKS: a shell command, run by
# `bash -c` (none when empty).
set -uo pipefail
cd "$(dirname "$0")/.."
DOTNET=${DOTNET:-dotnet}
CONFIGURATION=${CONFIGURATION:-Release}
RESULTS=${RESULTS:-TestResults}
CHECKS=${CHECKS:-}
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

# each run in a session of its own (setsid): a signal to its process group reaches its test host and the QEMU guests
# it started, and Ctrl-C at the terminal reaches only this script, which stops them
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
# step NAME COMMAND: COMMAND by `bash -c` in the foreground of this side (stoppable as a run is); fails as NAME
step() {
    local name=$1
    [ -n "$2" ] || return 0
    setsid bash -c "$2" &
    local pid=$!
    running=("$system" "$pid")
    wait "$pid" || failed+=("$name")
}

# the system tests the other side runs after its projects, and the rest (a test filter has no "not" of a group)
VERIFIED_BOOT=Tsunagu.SystemTests.Qemu.VerifiedBootTests.
SECOND_SIDE="(TestCategory=arm64|FullyQualifiedName~$VERIFIED_BOOT)"
FIRST_SIDE="TestCategory!=arm64&FullyQualifiedName!~$VERIFIED_BOOT"
run "$SYSTEM" Tsunagu.SystemTests --filter "TestCategory!=long&$FIRST_SIDE"
system=$!
running=("$system")
failed=()
for p in "${others[@]}"; do
    run "$p" "$(basename "$p" .csproj)"
    pid=$!
    running=("$system" "$pid")
    wait "$pid" || failed+=("$(basename "$p" .csproj)")
done
step checks "$CHECKS"
run "$SYSTEM" Tsunagu.SystemTests.second --filter "TestCategory!=long&$SECOND_SIDE"
pid=$!
running=("$system" "$pid")
wait "$pid" || failed+=("$(basename "$SYSTEM" .csproj) (the second side's)")
running=("$system")
wait "$system" || failed+=("$(basename "$SYSTEM" .csproj)")
trap - INT TERM HUP
if [ "${#failed[@]}" -gt 0 ]; then
    echo "tests/run.sh: failed: ${failed[*]}" >&2
    exit 1
fi
echo "tests/run.sh: every test project and step passed (${#others[@]} projects beside the system tests)"
