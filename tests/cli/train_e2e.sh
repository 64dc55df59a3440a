#!/usr/bin/env bash
# `dfd prepare` -> `dfd train` -> `dfd eval` through the command line, on a miniature
# Celeb-DF v2 layout made of the shared DFDC clips: the manifest has a row per crop with
# groups and the official test split, a second prepare resumes (does nothing), training
# writes a loadable model, eval prints sane metrics and writes its files, usage errors
# exit 2. Skips (77) without the shared clips or the face detector models.
set -uo pipefail
BIN=${DFD_BIN:-build/dfd}
SRC=${DFD_SOURCE_DIR:-.}
D=${DFD_SHARED_DATA:-}
fail() { echo "FAIL: $*" >&2; exit 1; }

# Usage errors first (need nothing).
"$BIN" train >/dev/null 2>&1; [[ $? == 2 ]] || fail "train without arguments: exit not 2"
"$BIN" train image --arch tiny-cnn >/dev/null 2>&1; [[ $? == 2 ]] || fail "train without --data: exit not 2"
"$BIN" train image --data x --arch tiny-cnn --frobnicate >/dev/null 2>&1; [[ $? == 2 ]] || fail "unknown option: exit not 2"
"$BIN" eval --model x >/dev/null 2>&1; [[ $? == 2 ]] || fail "eval without --data: exit not 2"
"$BIN" prepare --data x >/dev/null 2>&1; [[ $? == 2 ]] || fail "prepare without --out: exit not 2"

if [[ -z "$D" || ! -f "$D/videos/lynaeydofd.mp4" ]]; then echo "skipped: shared clips absent"; exit 77; fi
if [[ ! -f "$SRC/models/registry/blazeface-short.safetensors" ]]; then echo "skipped: face models absent (run setup.sh)"; exit 77; fi

tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
ds="$tmp/celebdf"
mkdir -p "$ds/Celeb-real" "$ds/Celeb-synthesis" "$ds/YouTube-real"
ln -s "$D/videos/lynaeydofd.mp4" "$ds/Celeb-real/id0_0000.mp4"
ln -s "$D/videos/lynaeydofd.mp4" "$ds/YouTube-real/00000.mp4"
ln -s "$D/videos/brtujopkby.mp4" "$ds/Celeb-synthesis/id0_id1_0000.mp4"
ln -s "$D/videos/widuwuoiur.mp4" "$ds/Celeb-synthesis/id1_id0_0000.mp4"
printf '1 YouTube-real/00000.mp4\n0 Celeb-synthesis/id1_id0_0000.mp4\n' >"$ds/List_of_testing_videos.txt"

out="$tmp/crops"
"$BIN" prepare --data "$ds" --out "$out" --per-video 3 --size 64 --workers 2 --models "$SRC/models/registry" >"$tmp/prep.txt" 2>&1 || fail "prepare: $(cat "$tmp/prep.txt")"
grep -q "^4 files" "$tmp/prep.txt" || fail "prepare summary: $(cat "$tmp/prep.txt")"
[[ -f "$out/manifest.csv" && -f "$out/prepare.json" ]] || fail "prepare outputs missing"
head -1 "$out/manifest.csv" | grep -qx 'file,label,group,source,frame,box,split' || fail "manifest header"
rows=$(($(wc -l <"$out/manifest.csv") - 1))
kept=$(sed -n 's/^kept: \([0-9]*\) crops.*/\1/p' "$tmp/prep.txt")
[[ $rows -ge 4 && $rows -le 12 && $rows == "$kept" ]] || fail "manifest has $rows rows, summary says $kept"
# Every row's crop exists; fakes of identity 0 share the group of id0's real video.
while IFS=, read -r file label group source frame box split; do
  [[ $file == file ]] && continue
  [[ -s "$out/$file" ]] || fail "missing crop $file"
  case "$source" in
    Celeb-real/id0_0000.mp4|Celeb-synthesis/id0_id1_0000.mp4) [[ $group == celeb/id0 ]] || fail "group of $source: $group" ;;
    YouTube-real/00000.mp4|Celeb-synthesis/id1_id0_0000.mp4) [[ $split == test ]] || fail "$source not in the test split" ;;
  esac
  [[ $frame -ge 0 ]] || fail "video crop without a frame index: $file"
done <"$out/manifest.csv"
grep -q '"margin"' "$out/prepare.json" || fail "prepare.json has no contract"

# Run again: everything is done already, the manifest is the same.
cp "$out/manifest.csv" "$tmp/manifest.1"
"$BIN" prepare --data "$ds" --out "$out" --per-video 3 --size 64 --models "$SRC/models/registry" >"$tmp/prep2.txt" 2>&1 || fail "prepare again"
grep -q "(4 done in an earlier run)" "$tmp/prep2.txt" || fail "no resume: $(cat "$tmp/prep2.txt")"
cmp -s "$out/manifest.csv" "$tmp/manifest.1" || fail "manifest changed on resume"

# A generic labels.csv whose `source` column is not one per file (synthetic-faces/ lists
# the generator there): each file still gets its own crop, and a second run resumes.
gen="$tmp/generic"
mkdir -p "$gen/fake"
for i in 1 2 3; do cp "$SRC/examples/astronaut.jpg" "$gen/fake/gen-$i.jpg"; done
printf 'file,label,group,source\nfake/gen-1.jpg,fake,g1,gan-2.1\nfake/gen-2.jpg,fake,g2,gan-2.1\nfake/gen-3.jpg,fake,g3,gan-2.1\n' >"$gen/labels.csv"
"$BIN" prepare --data "$gen" --out "$tmp/gen-crops" --size 64 --models "$SRC/models/registry" >"$tmp/prep3.txt" 2>&1 || fail "prepare (generic): $(cat "$tmp/prep3.txt")"
n=$(find "$tmp/gen-crops/crops/fake" -name '*.jpg' | wc -l)
[[ $n == 3 ]] || fail "3 files with one source gave $n crops: $(cat "$tmp/prep3.txt")"
[[ $(($(wc -l <"$tmp/gen-crops/manifest.csv") - 1)) == 3 ]] || fail "generic manifest: $(cat "$tmp/gen-crops/manifest.csv")"
"$BIN" prepare --data "$gen" --out "$tmp/gen-crops" --size 64 --models "$SRC/models/registry" >"$tmp/prep4.txt" 2>&1 || fail "prepare again (generic)"
grep -q "(3 done in an earlier run)" "$tmp/prep4.txt" || fail "generic: no resume: $(cat "$tmp/prep4.txt")"

# Train a few steps of tiny-cnn (validation: half of the non-test groups).
run="$tmp/run"
"$BIN" train image --arch tiny-cnn --input-size 32 --data "$out" --out "$run" --epochs 2 --batch 4 \
  --val-fraction 0.5 --seed 3 >"$tmp/train.txt" 2>&1 || fail "train: $(cat "$tmp/train.txt")"
[[ -f "$run/best.safetensors" && -f "$run/checkpoint.safetensors" && -f "$run/history.png" ]] || fail "train outputs"
[[ $(wc -l <"$run/history.csv") == 3 ]] || fail "history: $(cat "$run/history.csv")"
grep -q "^model: $run/best.safetensors" "$tmp/train.txt" || fail "train summary: $(cat "$tmp/train.txt")"
# Another seed on the same validation groups (--split-seed): 16 one-crop groups of
# dfdc-faces; --seed 3 and --seed 4 hold out different groups, --seed 4 --split-seed 3 the
# same as --seed 3, and the model records it in its training_data.
sp="$tmp/split"
mkdir -p "$sp/real" "$sp/fake"
for l in real fake; do for f in $(ls "$D/dfdc-faces/$l" | sort | head -8); do ln -s "$D/dfdc-faces/$l/$f" "$sp/$l/$f"; done; done
vals() {  # vals OUT ARGS...: the names of the validation crops the run evaluated
  "$BIN" train image --arch tiny-cnn --input-size 32 --data "$sp" --out "$1" --epochs 1 --batch 4 --val-fraction 0.25 \
    "${@:2}" >"$1.txt" 2>&1 || fail "train ${*:2}: $(cat "$1.txt")"
  "$BIN" eval --model "$1/best.safetensors" --data "$sp" --split val --val-fraction 0.25 --seed "$SPLIT" --out "$1-eval" \
    >/dev/null 2>&1 || fail "eval --split val of $1"
  cut -d, -f1 "$1-eval/scores.csv" | sort
}
SPLIT=3 vals "$tmp/s3" --seed 3 >"$tmp/s3.val"
SPLIT=4 vals "$tmp/s4" --seed 4 >"$tmp/s4.val"
SPLIT=3 vals "$tmp/s43" --seed 4 --split-seed 3 >"$tmp/s43.val"
! cmp -s "$tmp/s3.val" "$tmp/s4.val" || fail "seeds 3 and 4 held out the same groups: the check below proves nothing"
cmp -s "$tmp/s3.val" "$tmp/s43.val" || fail "--split-seed 3 held out other groups than --seed 3"
[[ "$(grep '^data:' "$tmp/s3.txt")" == "$(grep '^data:' "$tmp/s43.txt")" ]] || fail "--split-seed: other counts"
grep -aqF 'split_seed\":3' "$tmp/s43/best.safetensors" || fail "split_seed not in the model's training_data"
# --norm: the model records the input normalisation it was trained with, and eval reads it.
SPLIT=3 vals "$tmp/sres" --seed 3 --norm residual >"$tmp/sres.val"
cmp -s "$tmp/s3.val" "$tmp/sres.val" || fail "--norm residual: other validation crops"
grep -aqF 'norm\":\"residual' "$tmp/sres/best.safetensors" || fail "--norm residual not in the model's crop contract"
grep -aqF 'norm\":\"minus1_1' "$tmp/s3/best.safetensors" || fail "default norm not minus1_1 in the model's crop contract"
"$BIN" train image --arch tiny-cnn --data "$sp" --out "$tmp/bad" --norm bgr >"$tmp/bad.txt" 2>&1; rc=$?
[[ $rc == 2 ]] && grep -q "residual" "$tmp/bad.txt" || fail "--norm bgr: exit $rc, $(cat "$tmp/bad.txt")"
# --real-only (SBI's protocol): the training fakes are left out, validation keeps the same
# groups and its fakes, and the model records it; without self-blends it is refused.
SPLIT=3 vals "$tmp/sro" --seed 3 --sbi-fraction 0.5 --real-only >"$tmp/sro.val"
cmp -s "$tmp/s3.val" "$tmp/sro.val" || fail "--real-only: other validation crops"
dropped=$(sed -n 's/.*real only: \([0-9]*\) training fakes left out.*/\1/p' "$tmp/sro.txt")
reals=$(sed -n 's/^data: train \([0-9]*\) real.*/\1/p' "$tmp/s3.txt")
[[ -n $dropped && $dropped -ge 1 ]] && grep -q "^data: train $reals real + $dropped fake," "$tmp/s3.txt" \
  || fail "--real-only left out $dropped fakes, of: $(grep '^data:' "$tmp/s3.txt")"
grep -q "^data: train $reals real + 0 fake, validation" "$tmp/sro.txt" || fail "--real-only: $(grep '^data:' "$tmp/sro.txt")"
[[ "$(grep -o 'validation.*' "$tmp/s3.txt" | head -1)" == "$(grep -o 'validation.*' "$tmp/sro.txt" | head -1)" ]] \
  || fail "--real-only changed the validation set"
grep -aqF 'real_only\":true' "$tmp/sro/best.safetensors" || fail "real_only not in the model's training_data"
grep -aqF 'real_only\":false' "$tmp/s3/best.safetensors" || fail "real_only:false not in an ordinary model's training_data"
"$BIN" train image --arch tiny-cnn --data "$sp" --out "$tmp/bad" --real-only >"$tmp/bad.txt" 2>&1; rc=$?
[[ $rc != 0 ]] && grep -q "sbi-fraction" "$tmp/bad.txt" || fail "--real-only without self-blends: exit $rc, $(cat "$tmp/bad.txt")"
# --paired: fakes of dfdc-faces whose real source is listed come with it (the groups of
# labels.csv); the count is logged, the model records it, and with --real-only it is refused.
pr="$tmp/pairs"
mkdir -p "$pr"
awk -F, 'NR > 1 && $2 == "real" { r[$3] = $1 } NR > 1 && $2 == "fake" && ($3 in r) && n < 8 { print r[$3] "," $3; print $1 "," $3; n++ }' \
  "$D/dfdc-faces/labels.csv" >"$tmp/pairs.lst"
[[ $(wc -l <"$tmp/pairs.lst") == 16 ]] || fail "dfdc-faces: fewer than 8 fakes with their real listed"
echo "file,label,group" >"$pr/labels.csv"
while IFS=, read -r f g; do
  mkdir -p "$pr/$(dirname "$f")" && ln -sf "$D/dfdc-faces/$f" "$pr/$f"
  echo "$f,$(dirname "$f"),$g" >>"$pr/labels.csv"
done <"$tmp/pairs.lst"
"$BIN" train image --arch tiny-cnn --input-size 32 --data "$pr" --out "$tmp/pair" --epochs 1 --batch 4 --val-fraction 0.25 \
  --seed 3 --paired >"$tmp/pair.txt" 2>&1 || fail "train --paired: $(cat "$tmp/pair.txt")"
grep -q "^data: train 6 real + 6 fake," "$tmp/pair.txt" && grep -q "paired: 6 training fakes come with their real source" "$tmp/pair.txt" \
  || fail "--paired: $(grep -E '^data:|paired' "$tmp/pair.txt")"
grep -aqF 'paired\":true' "$tmp/pair/best.safetensors" || fail "paired not in the model's training_data"
grep -aqF 'paired\":false' "$tmp/s3/best.safetensors" || fail "paired:false not in an ordinary model's training_data"
"$BIN" train image --arch tiny-cnn --data "$pr" --out "$tmp/bad" --paired --real-only --sbi-fraction 0.5 >"$tmp/bad.txt" 2>&1; rc=$?
[[ $rc != 0 ]] && grep -q "paired" "$tmp/bad.txt" || fail "--paired with --real-only: exit $rc, $(cat "$tmp/bad.txt")"

# --sbi-loc: a second loss on where each self-blend is, on the feature map the head pools;
# the model records its weight; refused without self-blends, for video, and for a head that
# does not pool straight into its logit (xception-image's dense 256).
"$BIN" train image --arch tiny-cnn --input-size 32 --data "$pr" --out "$tmp/loc" --epochs 1 --batch 4 --val-fraction 0.25 \
  --seed 3 --sbi-fraction 0.5 --sbi-loc 2 >"$tmp/loc.txt" 2>&1 || fail "train --sbi-loc: $(cat "$tmp/loc.txt")"
grep -q "sbi-loc: the blend's place taught on '.*' (8 x 8 cells), weight 2" "$tmp/loc.txt" &&
  grep -q "epoch 1: localisation loss [0-9]" "$tmp/loc.txt" || fail "--sbi-loc log: $(cat "$tmp/loc.txt")"
grep -aqF 'sbi_loc\":2' "$tmp/loc/best.safetensors" && grep -aqF 'sbi_loc_reals\":false' "$tmp/loc/best.safetensors" ||
  fail "sbi_loc not in the model's training_data"
# Such a model's maps are its own Grad-CAM at the grid's resolution: the file says so.
grep -aqF '"heatmap":"gradcam-full"' "$tmp/loc/best.safetensors" || fail "no heatmap key in an --sbi-loc model"
grep -aqF '"heatmap"' "$tmp/s3/best.safetensors" && fail "an ordinary model names a heat-map method"
# A fine-tune of it records where it started and what it froze.
"$BIN" train image --arch tiny-cnn --input-size 32 --data "$pr" --out "$tmp/ft" --epochs 1 --batch 4 --val-fraction 0.25 \
  --seed 3 --init "$tmp/loc/best.safetensors" --freeze-bn --freeze-until conv3 --lr 0.0005 >"$tmp/ft.txt" 2>&1 ||
  fail "train --init: $(cat "$tmp/ft.txt")"
grep -aqF "init\\\":\\\"$tmp/loc/best.safetensors" "$tmp/ft/best.safetensors" && grep -aqF 'freeze_bn\":true' "$tmp/ft/best.safetensors" &&
  grep -aqF 'freeze_until\":\"conv3' "$tmp/ft/best.safetensors" && grep -aqF 'lr\":0.0005' "$tmp/ft/best.safetensors" ||
  fail "the fine-tune's start and freezing not in its training_data"
"$BIN" train image --arch tiny-cnn --data "$pr" --out "$tmp/bad" --sbi-loc-reals >"$tmp/bad.txt" 2>&1; rc=$?
[[ $rc != 0 ]] && grep -q "sbi-loc" "$tmp/bad.txt" || fail "--sbi-loc-reals without --sbi-loc: exit $rc, $(cat "$tmp/bad.txt")"
"$BIN" train image --arch tiny-cnn --data "$pr" --out "$tmp/bad" --sbi-loc 1 --sbi-fraction 0 >"$tmp/bad.txt" 2>&1; rc=$?
[[ $rc != 0 ]] && grep -q "sbi-loc" "$tmp/bad.txt" || fail "--sbi-loc without self-blends: exit $rc, $(cat "$tmp/bad.txt")"
"$BIN" train video --arch tiny-video --data "$pr" --out "$tmp/bad" --sbi-loc 1 >"$tmp/bad.txt" 2>&1; rc=$?
[[ $rc != 0 ]] && grep -q "sbi-loc" "$tmp/bad.txt" || fail "--sbi-loc for video: exit $rc, $(cat "$tmp/bad.txt")"
"$BIN" train image --arch xception-image --input-size 71 --data "$pr" --out "$tmp/bad" --epochs 1 --sbi-fraction 0.5 \
  --sbi-loc 1 >"$tmp/bad.txt" 2>&1; rc=$?
[[ $rc != 0 ]] && grep -q "sbi-loc needs a head" "$tmp/bad.txt" || fail "--sbi-loc on xception-image: exit $rc, $(cat "$tmp/bad.txt")"

# Evaluate on the official test items, at frame and video level.
"$BIN" eval --model "$run/best.safetensors" --data "$out" --split test --out "$tmp/eval" >"$tmp/eval.txt" 2>&1 \
  || fail "eval: $(cat "$tmp/eval.txt")"
grep -q "^AUC [0-9.]*   EER [0-9.]*" "$tmp/eval.txt" || fail "eval report: $(cat "$tmp/eval.txt")"
for f in metrics.json scores.csv roc.png confusion.png; do [[ -s "$tmp/eval/$f" ]] || fail "eval did not write $f"; done
grep -q '"split": "test"' "$tmp/eval/metrics.json" || fail "metrics.json split"
n=$(($(wc -l <"$tmp/eval/scores.csv") - 1))
[[ $n -ge 2 ]] || fail "eval scored $n test crops"
"$BIN" eval --model "$run/best.safetensors" --data "$out" --split test --level video >"$tmp/evalv.txt" 2>&1 || fail "eval video"
grep -q "^2 videos (1 real, 1 fake)" "$tmp/evalv.txt" || fail "video level: $(cat "$tmp/evalv.txt")"
# Clip level on a labelled layout with groups (deepfaketimit's layout: file,label,group,
# a clip's frames sharing a group): 8 crops in 3 groups give 3 units, each the mean of its
# crops' scores (checked against the frame-level scores.csv).
gl="$tmp/grouped"
mkdir -p "$gl/real" "$gl/fake"
printf 'file,label,group\n' >"$gl/labels.csv"
i=0
for f in $(ls "$D/dfdc-faces/real" | sort | head -5); do
  ln -s "$D/dfdc-faces/real/$f" "$gl/real/$f"; printf 'real/%s,real,clip-r%d\n' "$f" $((i % 2)) >>"$gl/labels.csv"; i=$((i + 1))
done
for f in $(ls "$D/dfdc-faces/fake" | sort | head -3); do
  ln -s "$D/dfdc-faces/fake/$f" "$gl/fake/$f"; printf 'fake/%s,fake,clip-f\n' "$f" >>"$gl/labels.csv"
done
"$BIN" eval --model "$run/best.safetensors" --data "$gl" --out "$tmp/evalf" >"$tmp/evalf.txt" 2>&1 || fail "eval frames: $(cat "$tmp/evalf.txt")"
"$BIN" eval --model "$run/best.safetensors" --data "$gl" --level group --aggregation mean --out "$tmp/evalg" >"$tmp/evalg.txt" 2>&1 \
  || fail "eval groups: $(cat "$tmp/evalg.txt")"
grep -q "^3 groups (2 real, 1 fake)" "$tmp/evalg.txt" || fail "group level: $(cat "$tmp/evalg.txt")"
grep -q '"level": "group"' "$tmp/evalg/metrics.json" || fail "metrics.json level"
want=$(awk -F, 'NR > 1 && $2 == "fake" {s += $3; n++} END {printf "%.4f", s / n}' "$tmp/evalf/scores.csv")
got=$(awk -F, 'NR > 1 && $2 == "fake" {printf "%.4f", $3}' "$tmp/evalg/scores.csv")
[[ "$want" == "$got" ]] || fail "the fake clip's score $got is not the mean of its frames' $want"

# Self-blending masks from Face Mesh landmarks: found once for the real training faces,
# kept in OUT/landmarks.txt (one line per face, 46 points), read back on resume.
if [[ -f "$SRC/models/registry/face-landmark.safetensors" ]]; then
  lm="$tmp/lm"
  "$BIN" train image --arch tiny-cnn --input-size 32 --data "$gl" --out "$lm" --epochs 1 --batch 4 --val-fraction 0.34 \
    --sbi-fraction 0.5 --sbi-mask landmarks --models "$SRC/models/registry" >"$tmp/lm.txt" 2>&1 || fail "train --sbi-mask landmarks: $(cat "$tmp/lm.txt")"
  grep -q "landmarks: [1-9][0-9]* of [1-9][0-9]* faces" "$tmp/lm.txt" || fail "no landmarks found: $(cat "$tmp/lm.txt")"
  head -1 "$lm/landmarks.txt" | grep -q "^dfd.landmarks/1 46" || fail "landmarks.txt header: $(head -1 "$lm/landmarks.txt")"
  n=$(($(wc -l <"$lm/landmarks.txt") - 1))
  [[ $n -ge 1 && $n -le 5 ]] || fail "landmarks.txt has $n faces (5 reals in all)"
  "$BIN" train image --arch tiny-cnn --input-size 32 --data "$gl" --out "$lm" --epochs 2 --batch 4 --val-fraction 0.34 \
    --sbi-fraction 0.5 --sbi-mask landmarks --models "$SRC/models/registry" --resume "$lm/checkpoint.safetensors" >"$tmp/lm2.txt" 2>&1 \
    || fail "resume with landmarks: $(cat "$tmp/lm2.txt")"
  grep -q "landmarks: $n faces from $lm/landmarks.txt" "$tmp/lm2.txt" || fail "landmarks not read back: $(cat "$tmp/lm2.txt")"
else
  echo "note: no face-landmark model: the landmark-mask part is skipped"
fi

# Deterministic: the same report twice.
"$BIN" eval --model "$run/best.safetensors" --data "$out" --split test >"$tmp/eval2.txt" 2>&1 || fail "eval again"
diff <(tail -n +2 "$tmp/eval.txt" | grep -v '^wrote') <(tail -n +2 "$tmp/eval2.txt") >/dev/null || fail "eval not deterministic"
echo "ok"
