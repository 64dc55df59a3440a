#!/usr/bin/env bash
# `dfd scan --explain` with the shipped model: faces[].heatmap in the JSON (grid 16, 16 x 16
# values in [0, 1], the crop square; null without --explain; a video track's map is of one
# of its frames), and --explain-dir writing exactly one PNG per face (the 128 px crop
# enlarged 3 times). With ../shared/data, `dfd explain-eval` runs on a few fakes and prints
# its table.
set -uo pipefail
BIN=${DFD_BIN:-build/dfd}
SRC=${DFD_SOURCE_DIR:-.}
fail() { echo "FAIL: $*" >&2; exit 1; }
command -v python3 >/dev/null || { echo "skipped: python3 is not installed"; exit 77; }
[[ -f "$SRC/models/registry/blazeface-short.safetensors" ]] || { echo "skipped: face models missing (run ./setup.sh)"; exit 77; }
M="$SRC/models/dfd-image-2.safetensors"
[[ -f "$M" ]] || { echo "skipped: the shipped model is missing"; exit 77; }
export DFD_MODELS_DIR="$SRC/models/registry"
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
A=(--no-synthetic --model-image "$M" --frames 6)

"$BIN" scan "${A[@]}" --json "$SRC/examples/astronaut.jpg" >"$tmp/off.json" 2>"$tmp/err" || fail "scan: $(cat "$tmp/err")"
"$BIN" scan "${A[@]}" --json --explain "$SRC/examples/astronaut.jpg" "$SRC/examples/astronaut-clip.mp4" \
  >"$tmp/on.json" 2>"$tmp/err" || fail "scan --explain: $(cat "$tmp/err")"
python3 - "$tmp/off.json" "$tmp/on.json" <<'PY' || fail "the JSON's heat maps"
import json, sys
off = json.load(open(sys.argv[1]))["results"][0]
assert off["faces"] and all(f["heatmap"] is None for f in off["faces"]), "heatmap null without --explain"
img, vid = json.load(open(sys.argv[2]))["results"]
def grid(g):
    assert len(g) == 16 and all(len(r) == 16 for r in g), "16 x 16"
    assert all(0 <= v <= 1 for r in g for v in r), "values in [0, 1]"
for r in (img, vid):
    assert r["faces"], r["file"]
    for f in r["faces"]:
        h = f["heatmap"]
        assert h["grid"] == 16 and h["method"] == "occlusion-fast", h
        grid(h["manipulated"])
        assert h["synthetic"] is None and h["method_synthetic"] is None
        x, y, w, hh = h["crop"]
        assert w == hh > 0
        if r["media"] == "video":
            assert h["frame"] in f["frames"] and h["time_s"] >= 0, (h["frame"], f["frames"])
        else:
            assert h["frame"] is None and h["time_s"] is None
PY

# ---- --explain-dir: one PNG per face (image faces and video tracks), 384 x 384.
"$BIN" scan "${A[@]}" --explain-dir "$tmp/png" --json "$SRC/examples/astronaut.jpg" "$SRC/examples/astronaut-clip.mp4" \
  "$SRC/examples/chelsea.png" >"$tmp/dir.json" 2>"$tmp/err" || fail "scan --explain-dir: $(cat "$tmp/err")"
python3 - "$tmp/dir.json" "$tmp/png" <<'PY' || fail "the overlay PNGs"
import json, os, struct, sys
rs = json.load(open(sys.argv[1]))["results"]
want = sorted("%s_face%d.png" % (os.path.basename(r["file"]), i) for r in rs for i in range(len(r["faces"])))
got = sorted(os.listdir(sys.argv[2]))
assert got == want, (got, want)
assert not any(n.startswith("chelsea") for n in got), "no PNG for a file without a face"
for n in got:
    b = open(os.path.join(sys.argv[2], n), "rb").read(24)
    assert b[:8] == b"\x89PNG\r\n\x1a\n", n
    w, h = struct.unpack(">II", b[16:24])
    assert (w, h) == (384, 384), (n, w, h)
PY
"$BIN" scan --explain-dir "$SRC/examples/astronaut.jpg" "$SRC/examples/astronaut.jpg" >/dev/null 2>&1
[[ $? == 2 ]] || fail "--explain-dir on a file: exit 2"

# ---- The measurement tool, on a few fakes.
DATA=${DFD_SHARED_DATA:-$SRC/../shared/data}
if [[ -d "$DATA/utkface-real" ]]; then
  "$BIN" explain-eval -n 4 --model "$M" --method gradcam++ --method gradxinput "$DATA/utkface-real" >"$tmp/eval.txt" 2>"$tmp/err" ||
    fail "explain-eval: $(cat "$tmp/err")"
  grep -q "^model dfd-image-2, 4 self-blended fakes" "$tmp/eval.txt" || fail "explain-eval: $(cat "$tmp/eval.txt")"
  grep -Eq '^\| gradcam\+\+ \| [0-9.]+% ' "$tmp/eval.txt" && grep -Eq '^\| gradxinput \| ' "$tmp/eval.txt" ||
    fail "explain-eval table: $(cat "$tmp/eval.txt")"
  # Landmark-shaped blends (Face Mesh) and deletion by restoring the real face.
  "$BIN" explain-eval -n 3 --model "$M" --sbi-mask landmarks --blank original "$DATA/utkface-real" >"$tmp/eval.txt" 2>"$tmp/err" ||
    fail "explain-eval --sbi-mask landmarks: $(cat "$tmp/err")"
  grep -q "^blend mask: Face Mesh landmarks; deletion by restoring the original" "$tmp/eval.txt" &&
    grep -q "^model dfd-image-2, 3 self-blended fakes" "$tmp/eval.txt" || fail "explain-eval landmarks: $(cat "$tmp/eval.txt")"
  # Part blends: a smaller ellipse placed at random, so the region is a small share of the
  # crop; the mask's own map always points into it, the fixed centre cone does not.
  "$BIN" explain-eval -n 12 --model "$M" --sbi-mask part --blank original --method ref-inside --method ref-centre \
    "$DATA/utkface-real" >"$tmp/eval.txt" 2>"$tmp/err" || fail "explain-eval --sbi-mask part: $(cat "$tmp/err")"
  python3 - "$tmp/eval.txt" <<'PY' || fail "explain-eval part blends: $(cat "$tmp/eval.txt")"
import re, sys
t = open(sys.argv[1]).read()
assert "blend mask: part of the face" in t
chance = float(re.search(r"^blended region .*: ([0-9.]+)% of the crop", t, re.M).group(1))
assert 1 < chance < 25, chance  # whole-face ellipses cover about 39%
row = lambda m: [c.strip() for c in re.search(r"^\| %s \|.*$" % m, t, re.M).group(0).split("|")[1:-1]]
assert row("ref-inside")[1] == "100.0%", row("ref-inside")
assert float(row("ref-centre")[1].rstrip("%")) < 100, row("ref-centre")
PY
  "$BIN" explain-eval -n 3 --blank pink "$DATA/utkface-real" >/dev/null 2>"$tmp/err"
  [[ $? == 2 ]] && grep -q "grey, blur or original" "$tmp/err" || fail "explain-eval --blank pink: exit 2 with the choices"
else
  echo "note: no ../shared/data: explain-eval not run"
fi
echo "explain: all checks passed"
