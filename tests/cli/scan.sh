#!/usr/bin/env bash
# `dfd scan`: verdicts for images and videos through the whole pipeline (media, faces,
# crops, classifier), with a model trained inside this test on generated data:
#   one face; two faces (the file's P(fake) is the max over faces); no face (NO_FACE);
#   a corrupt file (ERROR, exit 1, the other files still analysed); a video with a face;
#   a video with no face; a video with a damaged frame (skipped and counted); a directory
#   walk (-r, non-media skipped); the JSON document parsed back field by field.
set -uo pipefail
BIN=${DFD_BIN:-build/dfd}
SRC=${DFD_SOURCE_DIR:-.}
fail() { echo "FAIL: $*" >&2; exit 1; }
command -v ffmpeg >/dev/null || { echo "skipped: ffmpeg is not installed"; exit 77; }
command -v python3 >/dev/null || { echo "skipped: python3 is not installed"; exit 77; }
[[ -f "$SRC/models/registry/blazeface-short.safetensors" ]] || { echo "skipped: face models missing (run ./setup.sh)"; exit 77; }
export DFD_MODELS_DIR="$SRC/models/registry"
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
ff() { ffmpeg -hide_banner -loglevel error -y "$@" || fail "ffmpeg $*"; }

# ---- A small model, trained here: faces (the astronaut, jittered) vs cats. The point is
# a real model file through the real pipeline, not its accuracy.
mkdir -p "$tmp/data/real" "$tmp/data/fake"
for i in 0 1 2 3 4 5 6 7; do
  ff -i "$SRC/examples/astronaut.png" -vf "crop=300:300:$((100 + i * 5)):$((40 + i * 3)),scale=64:64,hue=h=$((i * 10))" "$tmp/data/real/a$i.png"
  ff -i "$SRC/examples/chelsea.png" -vf "crop=250:250:$((80 + i * 6)):$((20 + i * 2)),scale=64:64,hue=h=$((i * 10))" "$tmp/data/fake/c$i.png"
done
"$BIN" train image --arch tiny-cnn --input-size 64 --data "$tmp/data" --val-fraction 0.25 --epochs 2 --batch 4 \
  --no-augment --out "$tmp/model" >"$tmp/train.log" 2>&1 || { cat "$tmp/train.log"; fail "training the test model"; }
M="$tmp/model/best.safetensors"
[[ -f "$M" ]] || fail "no model written"

# ---- Media made for the test.
ff -i "$SRC/examples/astronaut.png" -i "$SRC/examples/astronaut.png" -filter_complex "[1]hflip[b];[0][b]hstack" "$tmp/two.png"
ff -loop 1 -i "$SRC/examples/chelsea.png" -t 2 -r 10 -vf "scale=320:212,format=yuv420p" -c:v libx264 "$tmp/cat.mp4"
head -c 20000 "$SRC/examples/astronaut.jpg" >"$tmp/cut.jpg"
ff -i "$SRC/examples/astronaut-clip.mp4" -c:v mjpeg -q:v 3 "$tmp/mj.avi"
# Damage the headers of the 15th JPEG frame of the MJPEG clip.
python3 - "$tmp/mj.avi" <<'EOF' || fail "damaging a frame"
import sys
p = sys.argv[1]; d = bytearray(open(p, 'rb').read())
idx = [i for i in range(len(d) - 3) if d[i:i + 3] == b'\xff\xd8\xff']
i = idx[len(idx) // 2]
d[i + 2:i + 600] = b'\x00' * 598
open(p, 'wb').write(d)
EOF

# ---- One document for all of them; the cut JPEG makes the exit code 1.
"$BIN" scan --json -q --no-synthetic --model-image "$M" "$SRC/examples/astronaut.png" "$tmp/two.png" "$SRC/examples/chelsea.png" \
  "$tmp/cut.jpg" "$SRC/examples/astronaut-clip.mp4" "$tmp/cat.mp4" "$tmp/mj.avi" >"$tmp/out.json" 2>"$tmp/err"
rc=$?
[[ $rc == 1 ]] || fail "exit code $rc with a corrupt file among them (want 1): $(cat "$tmp/err")"
python3 - "$tmp/out.json" "$SRC" "$tmp" <<'EOF' || fail "JSON checks"
import json, math, sys
doc = json.load(open(sys.argv[1])); src, tmp = sys.argv[2], sys.argv[3]
assert doc["schema"] == "dfd.result/1", doc.get("schema")
rs = {r["file"]: r for r in doc["results"]}
assert len(rs) == 7, list(rs)
fields = ["file", "media", "verdict", "p_fake", "threshold", "error", "model", "faces", "frames", "timing_ms"]
for r in rs.values():
    for f in fields: assert f in r, (r["file"], f)
    assert set(r["timing_ms"]) == {"decode", "faces", "classify", "total"}, r["timing_ms"]
    assert set(r["model"]) == {"image", "video", "synthetic"} and r["model"]["synthetic"] is None
    for f in ("kind", "p_manipulated", "threshold_manipulated", "p_synthetic", "threshold_synthetic"): assert f in r, f
    assert r["p_synthetic"] is None and r["threshold_synthetic"] is None, "--no-synthetic"
def check_scored(r, n_faces):
    assert r["verdict"] in ("REAL", "FAKE"), r
    assert r["error"] is None
    assert 0 <= r["p_fake"] <= 1 and 0 <= r["threshold"] <= 1
    assert (r["p_fake"] >= r["threshold"]) == (r["verdict"] == "FAKE"), r
    # One detector: p_fake is its score, and a FAKE is a manipulation.
    assert r["p_manipulated"] == r["p_fake"] and r["threshold_manipulated"] == r["threshold"], r
    assert r["kind"] == ("manipulated" if r["verdict"] == "FAKE" else None), r
    assert len(r["faces"]) == n_faces, (r["file"], len(r["faces"]))
    assert abs(r["p_fake"] - max(f["p_fake"] for f in r["faces"])) < 1e-9, "file score is the max over faces"
    for f in r["faces"]:
        x, y, w, h = f["box"]
        assert w > 20 and h > 20, f
a = rs[src + "/examples/astronaut.png"]
check_scored(a, 1); assert a["media"] == "image" and a["frames"] is None and a["model"]["image"] == "best"
x, y, w, h = a["faces"][0]["box"]
assert 150 < x + w / 2 < 300 and 50 < y + h / 2 < 250, "astronaut face centre"
two = rs[tmp + "/two.png"]; check_scored(two, 2)
xs = sorted(f["box"][0] + f["box"][2] / 2 for f in two["faces"])
assert xs[0] < 512 < xs[1], ("one face in each half", xs)
cat = rs[src + "/examples/chelsea.png"]
assert cat["verdict"] == "NO_FACE" and cat["p_fake"] is None and cat["faces"] == [] and cat["error"] is None, cat
cut = rs[tmp + "/cut.jpg"]
assert cut["verdict"] == "ERROR" and "truncated" in cut["error"] and cut["p_fake"] is None, cut
v = rs[src + "/examples/astronaut-clip.mp4"]
check_scored(v, 1); assert v["media"] == "video"
assert len(v["frames"]) == 30, len(v["frames"])
assert [round(f["time_s"], 2) for f in v["frames"][:3]] == [0.0, 0.1, 0.2], v["frames"][:3]
seen = [f for f in v["frames"] if f["faces"]]
assert len(seen) >= 27, ("face in most frames", len(seen))
assert len(v["faces"][0]["frames"]) == len(seen)
for f in seen:
    assert f["faces"][0]["id"] == v["faces"][0]["id"] and 0 <= f["faces"][0]["p_fake"] <= 1
nv = rs[tmp + "/cat.mp4"]
assert nv["verdict"] == "NO_FACE" and nv["media"] == "video" and len(nv["frames"]) == 20 and nv["faces"] == [], nv["verdict"]
mj = rs[tmp + "/mj.avi"]
assert mj["verdict"] in ("REAL", "FAKE"), mj
assert mj["frames_skipped"] >= 1, ("damaged frame counted", mj["frames_skipped"])
EOF
grep -q "cut.jpg" "$tmp/err" || true

# ---- Human output and directory walk: -r finds media in sub-directories, skips the rest.
mkdir -p "$tmp/dir/sub"
cp "$SRC/examples/astronaut.jpg" "$tmp/dir/"; cp "$SRC/examples/chelsea.png" "$tmp/dir/sub/"
echo "notes" >"$tmp/dir/README.md"
out=$("$BIN" scan --no-synthetic --model-image "$M" "$tmp/dir" 2>"$tmp/err") || fail "dir scan exit $?: $(cat "$tmp/err")"
[[ $(wc -l <<<"$out") == 1 ]] || fail "without -r only the top level: $out"
grep -Eq '^(REAL|FAKE) +[0-9.]+% .*astronaut.jpg  \(1 face\)$' <<<"$out" || fail "human line: $out"
out=$("$BIN" scan -r --no-synthetic --model-image "$M" "$tmp/dir" 2>/dev/null) || fail "dir scan -r exit $?"
[[ $(wc -l <<<"$out") == 2 ]] || fail "-r: $out"
grep -q '^NO_FACE .*sub/chelsea.png  (0 faces)$' <<<"$out" || fail "-r no face line: $out"
! grep -q README <<<"$out" || fail "README scanned: $out"

# ---- Usage errors exit 2; a missing model exits 1 with a message.
"$BIN" scan >/dev/null 2>&1; [[ $? == 2 ]] || fail "no file: exit"
"$BIN" scan --threshold 2 x.png >/dev/null 2>&1; [[ $? == 2 ]] || fail "bad threshold: exit"
"$BIN" scan --model-image "$tmp/nope.safetensors" "$SRC/examples/astronaut.png" >/dev/null 2>"$tmp/err"
[[ $? == 1 ]] || fail "missing model: exit"
grep -q "nope.safetensors" "$tmp/err" || fail "missing model message: $(cat "$tmp/err")"
echo "scan: all checks passed"
