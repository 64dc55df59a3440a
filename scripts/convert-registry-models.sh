#!/usr/bin/env bash
# convert-registry-models.sh BUILD_DIR — converts the pretrained files that setup.sh fetched
# from package registries (third_party/) into dfd model files under models/registry/
# (git-ignored), with the dfd binary in BUILD_DIR. Skips a model whose output is newer
# than its source, so running it again is cheap; DFD_FORCE=1 converts everything again.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD_DIR=${1:-build}
DFD="$BUILD_DIR/dfd"
OUT=models/registry
say() { printf 'convert-registry-models: %s\n' "$*" >&2; }

[[ -x "$DFD" ]] || { say "no dfd binary at $DFD (build first)"; exit 1; }
mkdir -p "$OUT"

# source file                                                          output name
MODELS=(
  "third_party/@mediapipe_face_detection/face_detection_short_range.tflite blazeface-short"
  "third_party/@mediapipe_face_detection/face_detection_full_range.tflite  blazeface-full"
  "third_party/@mediapipe_face_mesh/face_landmark.tflite                    face-landmark"
  "third_party/nsfwjs/tfjs-mobilenet_v2/model.json                         mobilenet_v2-imagenet"
  "third_party/nsfwjs/tfjs-inception_v3/model.json                         inception_v3-imagenet"
)
for entry in "${MODELS[@]}"; do
  read -r src name <<<"$entry"
  dst="$OUT/$name.safetensors"
  if [[ ! -f "$src" ]]; then
    say "missing $src (run ./setup.sh to fetch it)"; exit 1
  fi
  if [[ "${DFD_FORCE:-0}" != 1 && -f "$dst" && "$dst" -nt "$src" ]]; then
    continue
  fi
  case "$src" in *.tflite) fmt=tflite ;; *.json) fmt=tfjs ;; *) say "unknown format: $src"; exit 1 ;; esac
  "$DFD" import "$fmt" "$src" "$dst" >/dev/null
  say "wrote $dst"
done
