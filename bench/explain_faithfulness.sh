#!/usr/bin/env bash
# bench/explain_faithfulness.sh [BUILD_DIR] [N] — how faithful dfd's heat maps are, and what
# they cost (docs/explain.md):
#   1. `dfd explain-eval` on N (default 500) self-blended fakes made from the held-out half
#      of ../shared/data/utkface-real with the shipped model: pointing game, map mass
#      inside the blended region against chance, and the deletion check, for Grad-CAM (the
#      method `dfd scan --explain` uses) and the three it was measured against;
#   2. the cost: `dfd scan` on 12 copies each of examples/astronaut.jpg and .png, with and
#      without --explain, median time per image (one process, models loaded once).
# Long: occlusion makes 256 passes per face; about 15 minutes on 2 busy cores.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD_DIR=${1:-build}
N=${2:-500}
BIN="$BUILD_DIR/dfd"
DATA=${DFD_SHARED_DATA:-../shared/data}
[[ -x "$BIN" ]] || { echo "no $BIN: build first" >&2; exit 1; }
[[ -d "$DATA/utkface-real" ]] || { echo "no research data at $DATA/utkface-real" >&2; exit 1; }

"$BIN" explain-eval -n "$N" --method gradcam --method occlusion --method gradxinput --method gradcam-mid \
  "$DATA/utkface-real"

tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
for i in $(seq 12); do cp examples/astronaut.jpg "$tmp/a$i.jpg"; cp examples/astronaut.png "$tmp/p$i.png"; done
for mode in off on; do
  X=(); [[ $mode == on ]] && X=(--explain)
  "$BIN" scan --no-synthetic --json "${X[@]}" "$tmp"/* >"$tmp/$mode.json"
done
python3 - "$tmp/off.json" "$tmp/on.json" <<'PY'
import json, statistics, sys
def med(path, key):
    rs = json.load(open(path))["results"][2:]  # the first of each kind warms up
    return statistics.median(r["timing_ms"][key] for r in rs)
off, on = med(sys.argv[1], "total"), med(sys.argv[2], "total")
print("\ncost per image (median of 22, ms): without --explain %.1f, with %.1f: %.2fx (classify %.1f -> %.1f)"
      % (off, on, on / off, med(sys.argv[1], "classify"), med(sys.argv[2], "classify")))
PY
