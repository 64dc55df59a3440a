#!/usr/bin/env bash
# train-synthetic-model.sh — how models/dfd-synthetic-1.safetensors (the synthetic-face
# detector: GAN and diffusion faces that never existed) was made, with its
# leave-one-generator-out validation, end to end from ../shared/data.
#
#   scripts/train-synthetic-model.sh            # folds, then the shipped model
#   STEPS=final scripts/train-synthetic-model.sh
#
# 1. Crops by the crop contract: `dfd prepare` on synthetic-faces/ (and on the two UTKFace
#    halves, as train-default-model.sh cuts them).
# 2. Fixed partitions, by sorted file name (so anyone gets the same ones):
#    - FFHQ reals and each generator's fakes: i % 5 == 0 test (measured, never trained on
#      nor used for the threshold), i % 5 == 1 validation (best epoch, threshold), else train;
#    - dfdc-faces reals: i % 8 == 0 train, i % 8 == 1 validation, the other 7,500 measured;
#    - UTKFace: the training half split in two (train / validation), the held-out half measured.
# 3. Leave one generator out: for each generator G, train on the other two (train parts)
#    and all the training reals, validate on their validation parts and the validation
#    reals; measure AUC and the share flagged at the stored threshold on ALL of G's faces
#    against the FFHQ test reals.
# 4. The shipped model: all three generators; measured on each generator's test part, and
#    false positives on FFHQ test reals, the UTKFace held-out half and the 7,500 DFDC reals.
# Resumable: each run resumes from its checkpoint; finished steps are skipped.
# MARGIN=M: the wider-crop variant (session 8): every crop cut with margin M instead of the
# contract's 1.01 (more hair and background, where generators also leave traces), in
# runs/syn-m$M; the dfdc-faces reals are left out there, since those files are fixed tight
# crops that a wider margin could only pad with replicated edges no other class has.
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${DFD_SHARED_DATA:-../shared/data}
DFD=${DFD:-build/dfd}
MARGIN=${MARGIN:-}
MSFX=${MARGIN:+-m$MARGIN}
R=${RUN:-runs/syn$MSFX}
SIZE=${SIZE:-128}
EPOCHS=${EPOCHS:-8}
STEPS=${STEPS:-"logo final"}
HELD=${HELD:-"stable-diffusion-2.1 stylegan1 stylegan2"}   # which generators to leave out
FPR=${FPR:-0.01}    # the stored threshold: at most this false-positive rate on validation reals
TAG=${TAG:-}        # a variant's name: its runs go to run$TAG, its evaluations to eval-*$TAG
EXTRA=${EXTRA:-}    # more `dfd train` options for a variant (an ablation)
INIT=${INIT:-models/registry/mobilenet_v2-imagenet.safetensors}   # the starting weights
GENS="stable-diffusion-2.1 stylegan1 stylegan2"

C=runs/syn-crops$MSFX
[[ -f $C/manifest.csv ]] ||
  "$DFD" prepare --data "$DATA/synthetic-faces" --out "$C" --workers 2 ${MARGIN:+--margin "$MARGIN"}
[[ -f runs/utk-holdout-crops$MSFX/manifest.csv ]] || MARGIN="$MARGIN" DFD_SHARED_DATA="$DATA" DFD="$DFD" scripts/prepare-utk-halves.sh

# link DIR PREFIX < files: symlinks DIR/PREFIX<name> to each listed file.
link() {
  mkdir -p "$1"
  while read -r f; do ln -sf "$(realpath "$f")" "$1/$2$(basename "$f")"; done
}
# part LIST MOD KEEP...: the lines of LIST whose index i (from 0) has i % MOD in KEEP.
part() {
  local list=$1 mod=$2; shift 2
  awk -v mod="$mod" -v keep=" $* " '{ if (index(keep, " " ((NR - 1) % mod) " ")) print }' "$list"
}

if [[ ! -f "$R/.parts" ]]; then
  rm -rf "$R"; mkdir -p "$R/lists"
  ls "$C"/crops/real/*.jpg | sort >"$R/lists/ffhq"
  for g in $GENS; do ls "$C"/crops/fake/fake__"$g"-*.jpg | sort >"$R/lists/$g"; done
  if [[ -z $MARGIN ]]; then ls "$DATA"/dfdc-faces/real/*.jpg | sort >"$R/lists/dfdc-real"; else : >"$R/lists/dfdc-real"; fi
  ls runs/utk-train-crops$MSFX/crops/real/*.jpg | sort >"$R/lists/utk-train"
  # Reals shared by every run.
  part "$R/lists/ffhq" 5 2 3 4 | link "$R/reals-train/real" ffhq-
  part "$R/lists/dfdc-real" 8 0 | link "$R/reals-train/real" dfdc-
  part "$R/lists/utk-train" 2 0 | link "$R/reals-train/real" utk-
  part "$R/lists/ffhq" 5 1 | link "$R/reals-val/real" ffhq-
  part "$R/lists/dfdc-real" 8 1 | link "$R/reals-val/real" dfdc-
  part "$R/lists/utk-train" 2 1 | link "$R/reals-val/real" utk-
  # Measured only.
  part "$R/lists/ffhq" 5 0 | link "$R/fp-ffhq/real" ffhq-
  part "$R/lists/dfdc-real" 8 2 3 4 5 6 7 | link "$R/fp-dfdc/real" dfdc-
  for g in $GENS; do
    part "$R/lists/ffhq" 5 0 | link "$R/eval-all-$g/real" ffhq-
    link "$R/eval-all-$g/fake" "" <"$R/lists/$g"
    part "$R/lists/ffhq" 5 0 | link "$R/eval-test-$g/real" ffhq-
    part "$R/lists/$g" 5 0 | link "$R/eval-test-$g/fake" ""
  done
  touch "$R/.parts"
fi

# fold NAME GENERATORS...: training and validation folders with those generators' fakes.
fold() {
  local name=$1; shift
  local d="$R/$name"
  [[ -d "$d/train" ]] && return 0
  mkdir -p "$d/train" "$d/val"
  ln -s "$(realpath "$R/reals-train/real")" "$d/train/real"
  # The crops' contract (margin, shift), so that the model records what it was trained on.
  cp "$C/prepare.json" "$d/train/prepare.json"
  ln -s "$(realpath "$R/reals-val/real")" "$d/val/real"
  for g in "$@"; do
    part "$R/lists/$g" 5 2 3 4 | link "$d/train/fake" ""
    part "$R/lists/$g" 5 1 | link "$d/val/fake" ""
  done
}

task=()
# (grep on a variable: `dfd help | grep -q` under pipefail fails when grep stops reading early)
help_text=$("$DFD" help train 2>&1)
[[ "$help_text" == *--task* ]] && task=(--task synthetic)
train() {  # train NAME
  local d="$R/$1" o="$R/$1/run$TAG" resume=()
  [[ -f "$o/best.safetensors" && -f "$o/.done" ]] && return 0
  [[ -f "$o/checkpoint.safetensors" ]] && resume=(--resume "$o/checkpoint.safetensors")
  "$DFD" train image --arch mobilenet_v2-image --input-size "$SIZE" "${task[@]}" \
    --init "$INIT" \
    --data "$d/train" --val "$d/val" --epochs "$EPOCHS" --batch 32 --lr 1e-3 --optimizer adamw --patience 3 \
    --threshold-fpr "$FPR" --threads 2 --seed 1 --out "$o" $EXTRA "${resume[@]}"
  touch "$o/.done"
}
ev() {  # ev MODEL DATA OUT
  [[ -f "$3/metrics.json" ]] || "$DFD" eval --model "$1" --data "$2" --flip --out "$3" >"$3.txt" 2>&1 || { cat "$3.txt"; return 1; }
}

if [[ " $STEPS " == *" logo "* ]]; then
  for held in $HELD; do
    others=()
    for g in $GENS; do [[ $g != "$held" ]] && others+=("$g"); done
    fold "logo-$held" "${others[@]}"
    train "logo-$held"
    ev "$R/logo-$held/run$TAG/best.safetensors" "$R/eval-all-$held" "$R/logo-$held/eval-heldout$TAG"
    ev "$R/logo-$held/run$TAG/best.safetensors" "$R/fp-ffhq" "$R/logo-$held/eval-fp-ffhq$TAG"
  done
fi
if [[ " $STEPS " == *" final "* ]]; then
  fold final $GENS
  train final
  m="$R/final/run$TAG/best.safetensors"
  for g in $GENS; do ev "$m" "$R/eval-test-$g" "$R/final/eval-test-$g$TAG"; done
  ev "$m" "$R/fp-ffhq" "$R/final/eval-fp-ffhq$TAG"
  ev "$m" runs/utk-holdout-crops$MSFX "$R/final/eval-fp-utk$TAG"
  if [[ -z $MARGIN ]]; then ev "$m" "$R/fp-dfdc" "$R/final/eval-fp-dfdc$TAG"; fi
fi
TAG="$TAG" scripts/synthetic-report.sh "$R"
