#!/usr/bin/env bash
# train-default-model.sh — how models/dfd-image-2.safetensors was made, end to end, so
# anyone can reproduce it (and its model card's numbers) from ../shared/data.
#   1. UTKFace split in two by file name order (alternate files): one half adds real
#      faces from another source (and self-blending sources) to training, the other is
#      kept apart to measure false positives on real faces the model never saw;
#   2. both halves cut by the crop contract with `dfd prepare` (as scan crops them);
#   3. MobileNetV2 (ImageNet weights from npm nsfwjs, converted by setup.sh) fine-tuned
#      at 128 px on dfdc-faces split by group, threshold at the validation EER;
#   4. evaluated on the validation groups and on the held-out UTKFace half;
#   5. the best checkpoint stored in bf16 as the shipped model.
# Resumable: run it again after an interruption (prepare skips what is done, train
# resumes from $RUN/checkpoint.safetensors).
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${DFD_SHARED_DATA:-../shared/data}
DFD=${DFD:-build/dfd}
RUN=${RUN:-runs/mnv2-128-v2}
EPOCHS=${EPOCHS:-10}
LIMIT=${LIMIT:-0}
SIZE=${SIZE:-128}   # input side; the DFDC crops come from originals of 107-223 px

DFD_SHARED_DATA="$DATA" DFD="$DFD" scripts/prepare-utk-halves.sh

resume=()
[[ -f "$RUN/checkpoint.safetensors" ]] && resume=(--resume "$RUN/checkpoint.safetensors")
"$DFD" train image --arch mobilenet_v2-image --input-size "$SIZE" \
  --init models/registry/mobilenet_v2-imagenet.safetensors \
  --data "$DATA/dfdc-faces" --val-fraction 0.2 --extra-real runs/utk-train-crops --sbi-fraction 0.2 \
  --epochs "$EPOCHS" --limit "$LIMIT" --val-limit 0 --batch 32 --lr 1e-3 --optimizer adamw --patience 3 \
  --threads 2 --seed 1 --out "$RUN" "${resume[@]}"

"$DFD" eval --model "$RUN/best.safetensors" --data "$DATA/dfdc-faces" --split val --flip --out "$RUN/eval-val"
"$DFD" eval --model "$RUN/best.safetensors" --data runs/utk-holdout-crops --flip --out "$RUN/eval-utk"

# The shipped file: the best epoch's weights in bf16 (4.5 MB), evaluated again as shipped.
python3 scripts/safetensors-to-bf16.py "$RUN/best.safetensors" "$RUN/dfd-image.safetensors"
"$DFD" eval --model "$RUN/dfd-image.safetensors" --data "$DATA/dfdc-faces" --split val --flip --out "$RUN/eval-val-bf16"
"$DFD" eval --model "$RUN/dfd-image.safetensors" --data runs/utk-holdout-crops --flip --out "$RUN/eval-utk-bf16"
