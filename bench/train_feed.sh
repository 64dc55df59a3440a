#!/usr/bin/env bash
# bench/train_feed.sh — `dfd train` end to end against the engine's own training step
# (`dfd bench --mode train`), alternating them round after round on this VM whose speed
# swings 2x within seconds, and printing each round's ratio.
#
#   bench/train_feed.sh ROUNDS [NAME=DFD_BINARY[:EXTRA TRAIN OPTIONS]]...
#   bench/train_feed.sh 4 old=/tmp/old/build/dfd new=build/dfd new-ahead="build/dfd:--feed ahead --no-cache"
#
# Environment: SIZE (128), BATCH (32), LIMIT (training samples per epoch, 1600), DATA
# (../shared/data/dfdc-faces), EXTRA_REAL (crops of other real faces, e.g.
# runs/utk-train-crops; none by default), INIT (the ImageNet MobileNetV2 setup.sh converts).
# The recipe is the shipped one (augmentation on, 20% self-blended reals, JPEG
# re-compression); validation is cut to 64 crops so the epoch is mostly training.
# Each round runs, for each NAME: `dfd bench` (fp32, as `dfd train` computes by default;
# bf16 when the NAME's options hold `--precision bf16`), then one
# epoch of `dfd train` (whose images/s counts only the training steps and their feed;
# the one-off decoding into the cache before them is reported on its own line).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ $# -lt 2 ]; then
    sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//'
    exit 2
fi
rounds=$1
shift
SIZE=${SIZE:-128}
BATCH=${BATCH:-32}
LIMIT=${LIMIT:-1600}
DATA=${DATA:-../shared/data/dfdc-faces}
INIT=${INIT:-models/registry/mobilenet_v2-imagenet.safetensors}
[ -d "$DATA" ] || { echo "train_feed.sh: no data at $DATA" >&2; exit 77; }
extra=()
[ -n "${EXTRA_REAL:-}" ] && extra=(--extra-real "$EXTRA_REAL")
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
for _ in $(seq "$rounds"); do
    for spec in "$@"; do
        name=${spec%%=*}
        rest=${spec#*=}
        bin=${rest%%:*}
        opts=""
        [[ "$rest" == *:* ]] && opts=${rest#*:}
        prec=fp32
        [[ "$opts" == *"--precision bf16"* ]] && prec=bf16
        b=$("$bin" bench --mode train --arch mobilenet_v2-image --size "$SIZE" --batch "$BATCH" --precision "$prec" \
            --iters 3 2>&1 | tail -1 | awk '{print $7}')
        rm -rf "$tmp/run"
        start=$(date +%s.%N)
        # shellcheck disable=SC2086
        "$bin" train image --arch mobilenet_v2-image --input-size "$SIZE" --init "$INIT" --data "$DATA" \
            "${extra[@]}" --val-fraction 0.2 --sbi-fraction 0.2 --epochs 1 --limit "$LIMIT" --val-limit 64 \
            --batch "$BATCH" --threads 2 --seed 1 --bn-recalibrate 0 --out "$tmp/run" $opts >"$tmp/log" 2>&1 ||
            { cat "$tmp/log" >&2; exit 1; }
        wall=$(awk -v a="$start" -v b="$(date +%s.%N)" 'BEGIN {printf "%.1f", b - a}')
        t=$(awk -F, 'NR == 2 {print $12}' "$tmp/run/history.csv")
        secs=$(awk -F, 'NR == 2 {print $11}' "$tmp/run/history.csv")
        echo "$name bench $b train $t ratio $(awk -v a="$t" -v b="$b" 'BEGIN {printf "%.3f", a / b}') train_s $secs wall_s $wall" | tee -a "$tmp/all"
        grep -h "cache:" "$tmp/log" | sed "s/^/$name   /" || true
    done
done
echo "== summary (median over rounds of train/bench, and best train images/s)"
for name in $(awk '{print $1}' "$tmp/all" | sort -u); do
    ratios=$(awk -v n="$name" '$1 == n {print $7}' "$tmp/all" | sort -n)
    med=$(echo "$ratios" | awk '{a[NR] = $1} END {print NR % 2 ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2}')
    best=$(awk -v n="$name" '$1 == n {print $5}' "$tmp/all" | sort -n | tail -1)
    printf '%-12s median ratio %s  best train %s images/s  (ratios: %s)\n' "$name" "$med" "$best" "$(echo $ratios)"
done
