#!/usr/bin/env bash
# prepare-utk-halves.sh — UTKFace split in two by file name order (alternate files), each
# half cut by the crop contract with `dfd prepare`: runs/utk-train-crops (extra reals for
# training) and runs/utk-holdout-crops (kept apart to measure false positives). One split
# for every training script, so the held-out half is the same for every model. Resumable.
# Environment: DFD_SHARED_DATA (../shared/data), DFD (build/dfd), MARGIN (a crop margin
# other than the contract's: the crops go to runs/utk-*-crops-m$MARGIN instead).
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${DFD_SHARED_DATA:-../shared/data}
DFD=${DFD:-build/dfd}
mkdir -p runs/utk/train/real runs/utk/holdout/real
i=0
for f in $(ls "$DATA/utkface-real" | sort); do
  half=$([[ $((i % 2)) == 0 ]] && echo train || echo holdout)
  ln -sf "$(realpath "$DATA/utkface-real/$f")" "runs/utk/$half/real/$f"
  i=$((i + 1))
done
m=() sfx=
[[ -n "${MARGIN:-}" ]] && m=(--margin "$MARGIN") sfx=-m$MARGIN
"$DFD" prepare --data runs/utk/train --out "runs/utk-train-crops$sfx" --workers 2 "${m[@]}"
"$DFD" prepare --data runs/utk/holdout --out "runs/utk-holdout-crops$sfx" --workers 2 "${m[@]}"
