#!/usr/bin/env bash
# One training epoch of a compact model on ../shared/data/dfdc-faces with a validation
# split by group, then `dfd eval` on those validation groups. Passes when the validation
# AUC beats chance clearly (> 0.6). Not a unit test: it takes minutes to an hour.
#
#   bench/train_one_epoch.sh [OUT_DIR]
#
# Environment: DFD_BIN (build/dfd), DATA (../shared/data/dfdc-faces), ARCH
# (mobilenet_v2-image), SIZE (128), INIT (models/registry/mobilenet_v2-imagenet.safetensors
# when it exists: the ImageNet-derived weights setup.sh converts from the npm package
# nsfwjs; else training starts from scratch), LIMIT (training samples, 0 = the whole
# epoch), EXTRA (more `dfd train` options). Prints the training and eval reports and a
# last line "auc=... pass|FAIL"; writes the augmentation preview to OUT_DIR/preview.png.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${DFD_BIN:-build/dfd}
DATA=${DATA:-../shared/data/dfdc-faces}
ARCH=${ARCH:-mobilenet_v2-image}
SIZE=${SIZE:-128}
INIT=${INIT:-models/registry/mobilenet_v2-imagenet.safetensors}
LIMIT=${LIMIT:-0}
OUT=${1:-runs/one-epoch}
[[ -d "$DATA" ]] || { echo "no data at $DATA"; exit 77; }
init=()
if [[ -f "$INIT" ]]; then init=(--init "$INIT"); else echo "note: $INIT absent: training from scratch"; fi
mkdir -p "$OUT"

"$BIN" train image --arch "$ARCH" --input-size "$SIZE" --data "$DATA" --preview-augment "$OUT/preview.png" \
  --sbi-fraction 0.25

start=$(date +%s)
# shellcheck disable=SC2086
"$BIN" train image --arch "$ARCH" --input-size "$SIZE" --data "$DATA" --val-fraction 0.2 --seed 1 \
  "${init[@]}" --epochs 1 --batch 32 --lr 1e-3 --limit "$LIMIT" --out "$OUT" ${EXTRA:-} | tee "$OUT/train.txt"
echo "training wall time: $(( $(date +%s) - start )) s"

"$BIN" eval --model "$OUT/best.safetensors" --data "$DATA" --split val --val-fraction 0.2 --seed 1 \
  --out "$OUT/eval" | tee "$OUT/eval.txt"
auc=$(sed -n 's/^AUC \([0-9.]*\).*/\1/p' "$OUT/eval.txt")
if awk -v a="$auc" 'BEGIN { exit !(a > 0.6) }'; then echo "auc=$auc pass"; else echo "auc=$auc FAIL"; exit 1; fi
