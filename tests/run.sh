#!/usr/bin/env bash
# `make test`'s run of the test projects (they are built already): the system tests (QEMU guests one after another,
# the longest project) start at once in the background, and every other test project of Tsunagu.slnx runs beside them,
# one after another: two projects at a time, as many as the 2-core build machine has cores, with the longest one never
# waiting for a slot. Each project writes RESULTS/<project>.trx (.ci/run sums them). The long tests (category "long",
# `make test-long`) are left out. Exits 1 if any project failed, naming which side; Ctrl-C (or TERM, HUP) stops both
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
run() {
    local project=$1; shift
    local name
    name=$(basename "$project" .csproj)
    setsid "$DOTNET" test "$project" -c "$CONFIGURATION" --no-build --logger "trx;LogFileName=$name.trx" \
        --logger "console;verbosity=normal" --results-directory "$RESULTS" "$@" &
}

run "$SYSTEM" --filter "TestCategory!=long"
system=$!
running=("$system")
failed=()
for p in "${others[@]}"; do
    run "$p"
    pid=$!
    running=("$system" "$pid")
    wait "$pid" || failed+=("$(basename "$p" .csproj)")
done
running=("$system")
wait "$system" || failed+=("$(basename "$SYSTEM" .csproj)")
trap - INT TERM HUP
if [ "${#failed[@]}" -gt 0 ]; then
    echo "tests/run.sh: failed: ${failed[*]}" >&2
    exit 1
fi
echo "tests/run.sh: every test project passed (${#others[@]} beside the system tests)"
