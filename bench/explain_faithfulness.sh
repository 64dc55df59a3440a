#!/usr/bin/env bash
# bench/explain_faithfulness.sh [BUILD_DIR] [N] — how faithful dfd's heat maps are, and what
# they cost (docs/explain.md):
#   1. `dfd explain-eval` on N (default 500) self-blended fakes made from the held-out half
#      of ../shared/data/utkface-real with the shipped model: pointing game, map mass
#      inside the blended region against chance, and the deletion check by restoring the
#      real face, for gradcam-full (the method `dfd scan --explain` uses for the default
#      manipulation detector, dfd-image-5: its file's `heatmap`), occlusion-fast (the
#      method for models without it), Grad-CAM++ (the synthetic detector's), the two reference
#      maps drawn from the blend mask and the fixed centre cone (ref-centre), on whole-face
#      elliptical blends and on part blends (a smaller ellipse placed at random: a region
#      whose place cannot be guessed);
#   2. the cost: bench/explain_cost.sh, two rounds.
# About 8 minutes on 2 busy cores.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD_DIR=${1:-build}
N=${2:-500}
BIN="$BUILD_DIR/dfd"
DATA=${DFD_SHARED_DATA:-../shared/data}
[[ -x "$BIN" ]] || { echo "no $BIN: build first" >&2; exit 1; }
[[ -d "$DATA/utkface-real" ]] || { echo "no research data at $DATA/utkface-real" >&2; exit 1; }

for mask in ellipse part; do
  "$BIN" explain-eval -n "$N" --sbi-mask "$mask" --blank original --method gradcam-full --method occlusion-fast --method gradcam++ \
    --method ref-inside --method ref-edge --method ref-centre "$DATA/utkface-real"
done

bench/explain_cost.sh "$BUILD_DIR" 2
