#!/usr/bin/env bash
# `dfd faces` and `dfd import`: one JSON document per run, an empty face list with a note
# (exit 0) when there is no face, tracks for videos, crops on disk, errors per file in the
# JSON with exit 1, usage errors exit 2; `dfd import tflite` names unsupported operators.
set -uo pipefail
BIN=${DFD_BIN:-build/dfd}
SRC=${DFD_SOURCE_DIR:-.}
fail() { echo "FAIL: $*" >&2; exit 1; }
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT

# Usage errors need no model.
"$BIN" faces >/dev/null 2>&1; [[ $? == 2 ]] || fail "no file exit"
"$BIN" faces --mode sideways x.png >/dev/null 2>&1; [[ $? == 2 ]] || fail "bad mode exit"
"$BIN" import onnx a b >/dev/null 2>&1; [[ $? == 2 ]] || fail "unknown import format exit"
"$BIN" import tflite >/dev/null 2>&1; [[ $? == 2 ]] || fail "import without files exit"
echo "garbage" >"$tmp/bad.tflite"
"$BIN" import tflite "$tmp/bad.tflite" "$tmp/out.safetensors" 2>"$tmp/err"; [[ $? == 1 ]] || fail "bad tflite exit"
grep -q "not a TFLite model" "$tmp/err" || fail "bad tflite message: $(cat "$tmp/err")"
[[ ! -e "$tmp/out.safetensors" ]] || fail "a failed import wrote its output"

TP="$SRC/third_party/@mediapipe_face_detection"
if [[ -f "$TP/face_detection_full_range_sparse.tflite" ]]; then
  "$BIN" import tflite "$TP/face_detection_full_range_sparse.tflite" "$tmp/s.safetensors" 2>"$tmp/err"
  [[ $? == 1 ]] || fail "sparse import exit"
  grep -q "unsupported TFLite operator 'DENSIFY'" "$tmp/err" || fail "sparse message: $(cat "$tmp/err")"
  out=$("$BIN" import tflite "$TP/face_detection_short_range.tflite" "$tmp/short.safetensors") || fail "import short"
  grep -q "blazeface-short" <<<"$out" || fail "import output: $out"
fi

if [[ ! -f "$SRC/models/registry/blazeface-short.safetensors" ]]; then
  echo "skipped: models/registry missing (run ./setup.sh)"; exit 77
fi

# One face on the astronaut, none on the cat (exit 0 with a note), in one document.
out=$("$BIN" faces --json "$SRC/examples/astronaut.png" "$SRC/examples/chelsea.png") || fail "faces exit $?"
python3 - "$out" <<'EOF' || fail "astronaut/cat JSON: $out"
import json, sys
d = json.loads(sys.argv[1])
a, c = d["results"]
assert a["media"] == "image" and a["error"] is None and len(a["faces"]) == 1, a
f = a["faces"][0]
assert len(f["box"]) == 4 and len(f["keypoints"]) == 6 and 0.5 <= f["score"] <= 1 and "roll_deg" in f, f
x, y, w, h = f["box"]
assert 210 < x + w / 2 < 240 and 105 < y + h / 2 < 135, f
assert c["faces"] == [] and c["note"] == "no face found" and c["error"] is None, c
EOF

# A video: tracks with per-frame index, time and box; crops written per track frame.
out=$("$BIN" faces --json --frames 10 --save-crops "$tmp/crops" "$SRC/examples/astronaut-clip.mp4") || fail "clip exit $?"
python3 - "$out" <<'EOF' || fail "clip JSON: $out"
import json, sys
r = json.loads(sys.argv[1])["results"][0]
assert r["media"] == "video" and r["error"] is None, r
t = r["tracks"]
assert len(t) == 1 and t[0]["id"] == 1 and len(t[0]["frames"]) >= 9, t
fr = t[0]["frames"][1]
assert set(fr) >= {"index", "time_s", "box"} and fr["time_s"] > 0, fr
assert len(r["faces"]) == 1 and r["faces"][0]["track"] == 1, r["faces"]
EOF
n=$(ls "$tmp/crops" | grep -c '^astronaut-clip.mp4_track1_frame[0-9]*\.png$')
[[ $n -ge 9 ]] || fail "crops: $(ls "$tmp/crops")"
head -c 8 "$tmp/crops/$(ls "$tmp/crops" | head -1)" | od -An -c | grep -q 'P   N   G' || fail "crop is not a PNG"

# A file that is not media: its error in the JSON, exit 1, the other file still done.
echo "nothing" >"$tmp/x.jpg"
out=$("$BIN" faces --json "$tmp/x.jpg" "$SRC/examples/chelsea.png" 2>/dev/null); rc=$?
[[ $rc == 1 ]] || fail "bad file exit $rc"
python3 - "$out" <<'EOF' || fail "error JSON: $out"
import json, sys
a, b = json.loads(sys.argv[1])["results"]
assert isinstance(a["error"], str) and a["faces"] == [], a
assert b["error"] is None and b["note"] == "no face found", b
EOF

# A directory: its images and videos in name order (the text file next to them is not an
# error), sub-directories only with -r; an empty one is an error.
mkdir -p "$tmp/dir/sub" "$tmp/empty"
cp "$SRC/examples/astronaut.png" "$tmp/dir/b.png"; cp "$SRC/examples/chelsea.png" "$tmp/dir/a.png"
cp "$SRC/examples/astronaut.jpg" "$tmp/dir/sub/c.jpg"; echo "notes" >"$tmp/dir/readme.txt"
out=$("$BIN" faces --json "$tmp/dir") || fail "directory exit $?"
python3 -c 'import json, sys; n = [r["file"].split("/")[-1] for r in json.loads(sys.argv[1])["results"]]; assert n == ["a.png", "b.png"], n' "$out" \
  || fail "directory JSON: $out"
out=$("$BIN" faces --json -r "$tmp/dir") || fail "recursive exit $?"
[[ $(python3 -c 'import json,sys; print(len(json.loads(sys.argv[1])["results"]))' "$out") == 3 ]] || fail "recursive: $out"
"$BIN" faces "$tmp/empty" >/dev/null 2>&1 && fail "an empty directory is not an error"

# Human output.
out=$("$BIN" faces "$SRC/examples/astronaut.png") || fail "human exit"
grep -q 'astronaut.png: image 512x512, 1 face' <<<"$out" || fail "human: $out"
exit 0
