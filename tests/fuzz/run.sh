#!/usr/bin/env bash
# Builds the libFuzzer targets (tests/fuzz/fuzz_*.c) with clang in build-fuzz/ and runs
# each for SECONDS (default 5), one after the other, seeded from tests/fuzz/corpus/<name>/.
#
#   bash tests/fuzz/run.sh [SECONDS]        make test-fuzz (5 s each), make fuzz (60 s each)
#
# New inputs the fuzzer finds are kept in build-fuzz/fuzz/work/<name>/ (so a later run
# starts where this one stopped); the committed seeds are never written. A crash, a leak,
# a timeout or a failed property stops nothing else but makes the script exit 1, with the
# input saved as build-fuzz/fuzz/artifacts/<name>/crash-* and the reproduction command
# printed. Environment: CC_FUZZ (default clang-14), FUZZ_BUILD (default build-fuzz),
# FUZZ_TARGETS (names to run, default all).
set -euo pipefail
cd "$(dirname "$0")/../.."
seconds=${1:-5}
cc=${CC_FUZZ:-clang-14}
build=${FUZZ_BUILD:-build-fuzz}

command -v "$cc" >/dev/null || { echo "fuzz: $cc not found (bash scripts/deps.sh fuzz)" >&2; exit 2; }
mkdir -p "$build/fuzz"
cmake -S . -B "$build" -DCMAKE_C_COMPILER="$cc" -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DBOTGATE_FUZZ=ON >"$build/fuzz/configure.log" 2>&1 ||
  { cat "$build/fuzz/configure.log" >&2; exit 2; }
targets=${FUZZ_TARGETS:-$(cd tests/fuzz && ls fuzz_*.c | sed 's/^fuzz_//; s/\.c$//')}
build_targets=$(for t in $targets; do printf 'fuzz_%s ' "$t"; done)
# shellcheck disable=SC2086 # one word per target
cmake --build "$build" -j "$(nproc)" --target $build_targets >/dev/null ||
  { cmake --build "$build" -j 1 --target $build_targets >&2; exit 2; }

passed=0
failed=0
echo "fuzz: each target for ${seconds}s"
printf '%-10s %8s %12s %10s %8s  %s\n' target seconds executions 'exec/s' corpus result
for t in $targets; do
  bin="$build/tests/fuzz/fuzz_$t"
  seeds="tests/fuzz/corpus/$t"
  work="$build/fuzz/work/$t"
  artifacts="$build/fuzz/artifacts/$t/"
  log="$build/fuzz/$t.log"
  rm -rf "$artifacts"
  mkdir -p "$work" "$artifacts" "$seeds"
  rc=0
  # -timeout: one input over 10 s is a hang; -rss_limit_mb: a leak or a huge allocation
  # is a failure; -max_len: above the 8 KiB token limit, so that refusal is reached too.
  "$bin" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -max_len=16384 \
    -print_final_stats=1 -artifact_prefix="$artifacts" "$work" "$seeds" >"$log" 2>&1 || rc=$?
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
  units=$(ls "$work" | wc -l)
  if [ "$rc" -eq 0 ]; then
    result=ok
    passed=$((passed + 1))
  else
    result="FAILED (exit $rc)"
    failed=$((failed + 1))
  fi
  printf '%-10s %8s %12s %10s %8s  %s\n' "$t" "$seconds" "${execs:-?}" "${rate:-?}" "$units" "$result"
  if [ "$rc" -ne 0 ]; then
    grep -E 'ERROR|SUMMARY|property failed|Test unit written|runtime error' "$log" | head -20 >&2 || true
    echo "  full log: $log" >&2
    for a in "$artifacts"*; do
      if [ -f "$a" ]; then echo "  reproduce: $bin $a" >&2; fi
    done
  fi
done
# The closing line in the form CI reads: one target = one test.
echo "fuzz: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
