#!/usr/bin/env bash
# bench/explain_cost.sh [BUILD_DIR] [ROUNDS] — what heat maps cost (docs/explain.md, "Cost"):
# `dfd scan` on 12 copies each of examples/astronaut.jpg and .png (one process, models
# loaded once), without and with --explain, alternately, ROUNDS times (default 3), with the
# synthetic-face detector and without; per run the median time per image from
# timing_ms.total (the first image of each kind dropped as warm-up) and the ratio. This
# machine's speed swings within seconds, so read the ratios of runs made side by side.
# MODEL=FILE measures with that image model instead of the default one.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${1:-build}/dfd
ROUNDS=${2:-3}
[[ -x "$BIN" ]] || { echo "no $BIN: build first" >&2; exit 1; }
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
for i in $(seq 12); do cp examples/astronaut.jpg "$tmp/a$i.jpg"; cp examples/astronaut.png "$tmp/p$i.png"; done
echo "| round | detectors | without --explain (ms) | with (ms) | ratio |"
echo "|---|---|---|---|---|"
for round in $(seq "$ROUNDS"); do
  for syn in both manipulation; do
    S=(); [[ $syn == manipulation ]] && S=(--no-synthetic)
    [[ -n ${MODEL:-} ]] && S+=(--model-image "$MODEL")
    for mode in off on; do
      X=(); [[ $mode == on ]] && X=(--explain)
      "$BIN" scan "${S[@]}" --json "${X[@]}" "$tmp"/a* "$tmp"/p* >"$tmp/$mode.json"
    done
    python3 - "$tmp/off.json" "$tmp/on.json" "$round" "$syn" <<'PY'
import json, statistics, sys
def med(path):
    rs = json.load(open(path))["results"]
    rs = [r for r in rs if not r["file"].endswith(("/a1.jpg", "/p1.png"))]  # warm-up
    return statistics.median(r["timing_ms"]["total"] for r in rs)
off, on = med(sys.argv[1]), med(sys.argv[2])
print("| %s | %s | %.1f | %.1f | %.2f |" % (sys.argv[3], sys.argv[4], off, on, on / off))
PY
  done
done
