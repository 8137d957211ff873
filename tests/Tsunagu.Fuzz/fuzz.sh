#!/bin/bash
# fuzz.sh (`make fuzz`): every fuzz target under afl-fuzz for FUZZ_SECONDS each, then a table of executions and
# crashes per target. The Tsunagu assemblies of a copy of the harness's build output are instrumented with
# SharpFuzz (the sharpfuzz tool of .config/dotnet-tools.json); afl-fuzz starts the harness once per target
# and feeds it inputs through SharpFuzz's fork server.
#
# Environment:
#   FUZZ_SECONDS   seconds per target                                  default 60
#   FUZZ_TARGETS   the targets to run (space separated)                default all (`Tsunagu.Fuzz list`)
#   FUZZ_OUT       findings: FUZZ_OUT/TARGET/default/{queue,crashes}   default out/fuzz
#   CONFIGURATION, DOTNET
# Exit status 1 when a target crashed: its inputs are in FUZZ_OUT/TARGET/default/crashes/; each becomes a file in
# tests/Tsunagu.Fuzz/corpus/TARGET/ and a test in FuzzRegressionTests (docs/security.md, "Fuzzing").
set -euo pipefail
cd "$(dirname "$0")/../.."
FUZZ_SECONDS=${FUZZ_SECONDS:-60}
OUT=${FUZZ_OUT:-out/fuzz}
CONFIGURATION=${CONFIGURATION:-Release}
DOTNET=${DOTNET:-dotnet}
[[ "$FUZZ_SECONDS" =~ ^[1-9][0-9]*$ ]] || { echo "fuzz: FUZZ_SECONDS='$FUZZ_SECONDS' is not a positive whole number" >&2; exit 2; }
command -v afl-fuzz >/dev/null || { echo "error: make fuzz needs afl-fuzz (apt-get install afl++)" >&2; exit 1; }

$DOTNET tool restore >/dev/null
$DOTNET build tests/Tsunagu.Fuzz -c "$CONFIGURATION" -v quiet -nologo
targets=${FUZZ_TARGETS:-$($DOTNET "tests/Tsunagu.Fuzz/bin/$CONFIGURATION/net10.0/Tsunagu.Fuzz.dll" list | awk '{print $1}')}
rm -rf "$OUT/bin" && mkdir -p "$OUT"
cp -a "tests/Tsunagu.Fuzz/bin/$CONFIGURATION/net10.0" "$OUT/bin"
# the protocol, HAL and firmware assemblies whole; of the server, the CSV import (its APIs)
for assembly in Tsunagu.Protocol Tsunagu.Hal Tsunagu.Firmware; do
    $DOTNET sharpfuzz "$OUT/bin/$assembly.dll" >/dev/null
done
$DOTNET sharpfuzz "$OUT/bin/tsunagu-server.dll" Tsunagu.Server.Apis >/dev/null

# no UI, no CPU governor or core_pattern demands, the .NET runtime is not an AFL-compiled binary, and its start
# (JIT, the first input twice) may take seconds on a loaded machine
export AFL_NO_UI=1 AFL_SKIP_CPUFREQ=1 AFL_I_DONT_CARE_ABOUT_MISSING_CRASHES=1 AFL_SKIP_BIN_CHECK=1 AFL_NO_AFFINITY=1
export AFL_FORKSRV_INIT_TMOUT=120000 AFL_SKIP_CRASHES=0

stat() { sed -n "s/^$1 *: *//p" "$2" | head -n1; }
rows=() crashed=0
for target in $targets; do
    [ -d "tests/Tsunagu.Fuzz/corpus/$target" ] || { echo "fuzz: no corpus for target '$target'" >&2; exit 2; }
    rm -rf "${OUT:?}/$target"
    echo "[fuzz] $target: ${FUZZ_SECONDS} s under afl-fuzz (log: $OUT/$target.log)" >&2
    if ! afl-fuzz -i "tests/Tsunagu.Fuzz/corpus/$target" -o "$OUT/$target" -t 10000 -m none -V "$FUZZ_SECONDS" \
            -- $DOTNET "$OUT/bin/Tsunagu.Fuzz.dll" afl "$target" >"$OUT/$target.log" 2>&1; then
        echo "fuzz: afl-fuzz failed on $target; the end of $OUT/$target.log:" >&2
        tail -n 20 "$OUT/$target.log" >&2
        exit 1
    fi
    stats="$OUT/$target/default/fuzzer_stats"
    crashes=$(stat saved_crashes "$stats"); crashes=${crashes:-$(stat unique_crashes "$stats")}
    hangs=$(stat saved_hangs "$stats"); hangs=${hangs:-$(stat unique_hangs "$stats")}
    rows+=("$(printf '%-15s %12s %10s %9s %8s %6s' "$target" "$(stat execs_done "$stats")" "$(stat execs_per_sec "$stats")" \
        "$(stat corpus_count "$stats")" "$crashes" "$hangs")")
    [ "${crashes:-0}" = 0 ] || crashed=1
done
printf '%-15s %12s %10s %9s %8s %6s\n' target executions "execs/s" corpus crashes hangs
printf '%s\n' "${rows[@]}"
if [ "$crashed" = 1 ]; then
    echo "fuzz: crashes found: the inputs are in $OUT/TARGET/default/crashes/ (replay: $DOTNET $OUT/bin/Tsunagu.Fuzz.dll replay TARGET FILE)" >&2
    exit 1
fi
