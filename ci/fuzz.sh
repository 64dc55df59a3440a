#!/usr/bin/env bash
# ci/fuzz.sh [SECONDS] [NAME...] — builds the libFuzzer harnesses (tests/fuzz/fuzz_*.c)
# with clang into build-fuzz/ (CMake option DFD_FUZZ: the library with ASan+UBSan and
# coverage) and runs each (or only the NAMEs given: image, video, tflite, ...) for
# SECONDS (default 60), one at a time, from its seed corpus (tests/fuzz/corpus/<name>/,
# not written to: new inputs go to build-fuzz/corpus/<name>/; the TFLite seeds are model
# files, so they are not committed but written by tests/fuzz/make_tflite_seeds.py here),
# with its dictionary (tests/fuzz/dict/<name>.dict) where there is one. A crash, leak,
# sanitizer report or timeout fails the run; the input that caused it is kept in
# build-fuzz/ as crash-*, leak-* or timeout-*, to become a regression test.
# Each harness's figures (executions, exec/s, edges covered, new inputs) are printed and
# appended to build-fuzz/fuzz-stats.tsv (date, name, seconds, execs, exec/s, edges,
# features, result), the running record docs/reliability.md's table is made from.
# Environment: CC (default clang-14), DFD_FUZZ_JOBS (parallel build jobs, default 2),
# DFD_FUZZ_MERGE=1 (afterwards, merge the new inputs that add coverage into the seed
# corpus in the tree: libFuzzer -merge=1, so the committed corpus stays minimal; not for
# tflite, whose inputs are model files).
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_EACH=${1:-60}
shift || true
BUILD=build-fuzz
CC=${CC:-clang-14}
if [[ ! -f "$BUILD/CMakeCache.txt" ]]; then
  CC="$CC" cmake -S . -B "$BUILD" -DDFD_FUZZ=ON -DCMAKE_BUILD_TYPE=RelWithDebInfo -DDFD_NATIVE=OFF >/dev/null
fi
cmake --build "$BUILD" -j"${DFD_FUZZ_JOBS:-2}"
python3 tests/fuzz/make_tflite_seeds.py
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
names=("$@")
if ((${#names[@]} == 0)); then
  for exe in "$BUILD"/fuzz_*; do
    [[ -x "$exe" ]] && names+=("$(basename "$exe" | sed 's/^fuzz_//')")
  done
fi
status=0
for name in "${names[@]}"; do
  [[ -x "$BUILD/fuzz_$name" ]] || { echo "fuzz: no harness $BUILD/fuzz_$name" >&2; status=1; continue; }
  seeds=tests/fuzz/corpus/$name
  work=$BUILD/corpus/$name
  mkdir -p "$work" "$seeds"
  dict=()
  [[ -f tests/fuzz/dict/$name.dict ]] && dict=(-dict="../tests/fuzz/dict/$name.dict")
  echo "fuzz: $name for ${SECONDS_EACH}s" >&2
  result=ok
  if ! (cd "$BUILD" && "./fuzz_$name" -max_total_time="$SECONDS_EACH" -timeout=10 -rss_limit_mb=2048 \
          -max_len=65536 -print_final_stats=1 "${dict[@]}" "corpus/$name" "../$seeds" 2>"fuzz-$name.log"); then
    echo "fuzz: $name FAILED (see $BUILD/fuzz-$name.log and $BUILD/crash-* / leak-* / timeout-*)" >&2
    tail -40 "$BUILD/fuzz-$name.log" >&2
    status=1
    result=FAILED
  fi
  log=$BUILD/fuzz-$name.log
  stat() { sed -n "s/^stat::$1: *//p" "$log" | tail -1; }
  cov=$(grep -o 'cov: [0-9]*' "$log" | tail -1 | cut -d' ' -f2)
  ft=$(grep -o 'ft: [0-9]*' "$log" | tail -1 | cut -d' ' -f2)
  echo "fuzz: $name: $result, $(stat number_of_executed_units) runs, $(stat average_exec_per_sec) exec/s," \
       "${cov:-?} edges, ${ft:-?} features, $(stat new_units_added) new inputs" >&2
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$(date -u +%FT%TZ)" "$name" "$SECONDS_EACH" \
    "$(stat number_of_executed_units)" "$(stat average_exec_per_sec)" "${cov:-}" "${ft:-}" "$result" \
    >> "$BUILD/fuzz-stats.tsv"
  # TFLite inputs are model files, which the tree does not hold: that corpus stays in build-fuzz/.
  if [[ "${DFD_FUZZ_MERGE:-0}" == 1 && $result == ok && $name != tflite ]]; then
    (cd "$BUILD" && "./fuzz_$name" -merge=1 -timeout=10 -rss_limit_mb=2048 -max_len=65536 "../$seeds" "corpus/$name" \
       2>"merge-$name.log") || { echo "fuzz: merging $name's corpus failed (see $BUILD/merge-$name.log)" >&2; status=1; }
    echo "fuzz: $name: seed corpus now $(ls "$seeds" | wc -l) files, $(du -sk "$seeds" | cut -f1) KiB" >&2
  fi
done
exit $status
