#!/usr/bin/env bash
# ci/fuzz.sh [SECONDS] — builds the libFuzzer harnesses (tests/fuzz/fuzz_*.c) with clang
# into build-fuzz/ (CMake option DFD_FUZZ: the library with ASan+UBSan and coverage) and
# runs each for SECONDS (default 60) from its seed corpus (tests/fuzz/corpus/<name>/,
# never written to: new inputs go to build-fuzz/corpus/<name>/; the TFLite seeds are model
# files, so they are not committed but written by tests/fuzz/make_tflite_seeds.py here). A crash, leak, sanitizer
# report or timeout fails the run; the input that caused it is kept in build-fuzz/ as
# crash-*, leak-* or timeout-*, to become a regression test.
# Environment: CC (default clang-14), DFD_FUZZ_JOBS (parallel build jobs, default 2).
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_EACH=${1:-60}
BUILD=build-fuzz
CC=${CC:-clang-14}
if [[ ! -f "$BUILD/CMakeCache.txt" ]]; then
  CC="$CC" cmake -S . -B "$BUILD" -DDFD_FUZZ=ON -DCMAKE_BUILD_TYPE=RelWithDebInfo -DDFD_NATIVE=OFF >/dev/null
fi
cmake --build "$BUILD" -j"${DFD_FUZZ_JOBS:-2}"
python3 tests/fuzz/make_tflite_seeds.py
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
status=0
for exe in "$BUILD"/fuzz_*; do
  [[ -x "$exe" ]] || continue
  name=$(basename "$exe"); name=${name#fuzz_}
  seeds=tests/fuzz/corpus/$name
  work=$BUILD/corpus/$name
  mkdir -p "$work"
  echo "fuzz: $name for ${SECONDS_EACH}s" >&2
  if ! (cd "$BUILD" && "./fuzz_$name" -max_total_time="$SECONDS_EACH" -timeout=10 -rss_limit_mb=2048 \
          -max_len=65536 -print_final_stats=1 "corpus/$name" "../$seeds" 2>"fuzz-$name.log"); then
    echo "fuzz: $name FAILED (see $BUILD/fuzz-$name.log and $BUILD/crash-* / leak-* / timeout-*)" >&2
    tail -40 "$BUILD/fuzz-$name.log" >&2
    status=1
  else
    grep -E "^stat::number_of_executed_units|^stat::new_units_added" "$BUILD/fuzz-$name.log" | sed "s/^/fuzz: $name: /" >&2 || true
  fi
done
exit $status
