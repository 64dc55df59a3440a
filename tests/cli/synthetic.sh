#!/usr/bin/env bash
# Two detectors through `dfd scan` (issue 16): the shipped manipulation model beside a
# synthetic-face stand-in made here from the same weights, re-saved with task "synthetic",
# input size 160 (so its crops are cut by its own contract) and a threshold chosen so that
# the astronaut's face crosses it while the manipulation model says REAL:
#   - the stand-in's scores (threshold 1, never firing) are read first, per face and track;
#   - with the lowered threshold the photo and the clip are FAKE, kind "synthetic", p_fake is
#     the synthetic score and threshold its threshold, the manipulation score is unchanged,
#     the track's synthetic score is the confident-strategy aggregate of its frames';
#   - the default lookup loads dfd-synthetic-*.safetensors beside the default image model;
#     --no-synthetic gives the old verdict with null synthetic fields;
#   - an image model file without "task" (written before it existed) still works;
#   - each model in the wrong slot is refused with a message; `dfd train --task synthetic`
#     writes the task and its model runs as the synthetic detector.
# The real synthetic model (models/dfd-synthetic-1.safetensors) is tested by synthetic_model.sh.
set -uo pipefail
BIN=${DFD_BIN:-build/dfd}
SRC=${DFD_SOURCE_DIR:-.}
fail() { echo "FAIL: $*" >&2; exit 1; }
M=$(ls "$SRC"/models/dfd-image-*.safetensors 2>/dev/null | sort | tail -1)
[[ -n "$M" ]] || { echo "skipped: no shipped image model in models/"; exit 77; }
[[ -f "$SRC/models/registry/blazeface-short.safetensors" ]] || { echo "skipped: face models missing (run ./setup.sh)"; exit 77; }
command -v python3 >/dev/null || { echo "skipped: python3 missing"; exit 77; }
command -v ffmpeg >/dev/null || { echo "skipped: ffmpeg missing"; exit 77; }
export DFD_MODELS_DIR="$SRC/models/registry"
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
ST="python3 $SRC/tests/cli/st_meta.py"
IMG="$SRC/examples/astronaut.png" CLIP="$SRC/examples/astronaut-clip.mp4" CAT="$SRC/examples/chelsea.png"

# ---- The stand-in's own scores (threshold 1: it cannot fire below P = 1).
$ST "$M" "$tmp/s0.safetensors" task=synthetic input_size=160 threshold=1 || fail "writing the stand-in"
"$BIN" scan --json -q --model-image "$M" --model-synthetic "$tmp/s0.safetensors" "$IMG" "$CLIP" "$CAT" >"$tmp/s0.json" \
  || fail "scan with the stand-in: exit $?"
"$BIN" scan --json -q --model-image "$M" --no-synthetic "$IMG" "$CLIP" "$CAT" >"$tmp/none.json" || fail "scan --no-synthetic: exit $?"
python3 - "$tmp/s0.json" "$tmp/none.json" >"$tmp/t1" <<'PY' || fail "stand-in scores"
import json, sys
s0, none = (json.load(open(p))["results"] for p in sys.argv[1:3])
for a, b in zip(s0, none):
    assert a["file"] == b["file"]
    if a["verdict"] == "NO_FACE":
        assert b["verdict"] == "NO_FACE" and a["p_synthetic"] is None and a["kind"] is None, a
        continue
    # The manipulation model's scores do not depend on a second detector being there.
    assert a["p_manipulated"] == b["p_manipulated"] == b["p_fake"], (a, b)
    assert a["threshold_manipulated"] == b["threshold"], (a, b)
    assert a["p_manipulated"] < a["threshold_manipulated"], ("the astronaut must be REAL to the image model", a)
    assert a["verdict"] == "REAL" and a["kind"] is None and a["threshold_synthetic"] == 1.0, a
    assert a["model"]["synthetic"] == "s0" and b["model"]["synthetic"] is None, (a["model"], b["model"])
    # Its own crop (160 px, not the image model's 128): a score of its own.
    assert 0.001 < a["p_synthetic"] < 1 and abs(a["p_synthetic"] - a["p_manipulated"]) > 1e-4, a
    # The score under the synthetic model closest to firing: p_fake is the manipulation one's here.
    assert a["p_fake"] == a["p_manipulated"], a
    assert b["p_synthetic"] is None and b["threshold_synthetic"] is None and b["kind"] is None, b
    for f in b["faces"]:
        assert f["p_synthetic"] is None, f
print("%.6f" % (0.9 * min(r["p_synthetic"] for r in s0 if r["p_synthetic"] is not None)))
PY
T1=$(cat "$tmp/t1")
[[ -n "$T1" ]] || fail "no threshold chosen"

# ---- The same faces with a threshold they cross: FAKE, kind synthetic.
$ST "$M" "$tmp/s1.safetensors" task=synthetic input_size=160 threshold="$T1" || fail "writing the stand-in"
"$BIN" scan --json -q --model-image "$M" --model-synthetic "$tmp/s1.safetensors" "$IMG" "$CLIP" "$CAT" >"$tmp/s1.json" \
  || fail "scan with the lowered threshold: exit $?"
python3 - "$tmp/s0.json" "$tmp/s1.json" "$T1" <<'PY' || fail "FAKE with kind synthetic"
import json, sys
s0, s1 = (json.load(open(p))["results"] for p in sys.argv[1:3])
t1 = float(sys.argv[3])
def confident(p):  # docs/result-schema.md, "Aggregation over a track"
    n = len(p); fake = [x for x in p if x > 0.8]; real = [x for x in p if x < 0.2]
    import math
    if len(fake) > int(n / 2.5) and len(fake) > math.ceil(11.0 * n / 30.0): return sum(fake) / len(fake)
    if len(real) > 0.9 * n: return sum(real) / len(real)
    return sum(p) / n
for a, b in zip(s0, s1):
    if a["verdict"] == "NO_FACE":
        assert b["verdict"] == "NO_FACE" and b["kind"] is None and b["p_fake"] is None and b["p_synthetic"] is None, b
        assert b["threshold"] == a["threshold_manipulated"], b
        continue
    assert b["verdict"] == "FAKE" and b["kind"] == "synthetic", b
    assert b["p_synthetic"] == a["p_synthetic"] and b["p_manipulated"] == a["p_manipulated"], (a, b)
    assert b["p_fake"] == b["p_synthetic"] and abs(b["threshold"] - t1) < 1e-6, b
    assert b["threshold_synthetic"] == b["threshold"] and b["threshold_manipulated"] == a["threshold_manipulated"], b
    assert b["model"] == {"image": a["model"]["image"], "video": None, "synthetic": "s1"}, b["model"]
    f = b["faces"][0]
    assert f["kind"] == "synthetic" and f["p_synthetic"] == b["p_synthetic"] and f["p_fake"] == f["p_synthetic"], f
    assert f["p_manipulated"] == b["p_manipulated"], f
    if b["media"] == "video":
        obs = [x for fr in b["frames"] for x in fr["faces"] if x["id"] == f["id"]]
        assert len(obs) == len(f["frames"]) >= 20, len(obs)
        for x in obs:
            assert 0 <= x["p_synthetic"] <= 1 and 0 <= x["p_manipulated"] <= 1, x
            assert x["kind"] == ("synthetic" if x["p_synthetic"] >= t1 else None), x
        # A synthetic face is scored per track like any other, aggregated over time the same way.
        assert abs(f["p_synthetic"] - confident([x["p_synthetic"] for x in obs])) < 1e-5, f
        assert abs(f["p_manipulated"] - confident([x["p_manipulated"] for x in obs])) < 1e-5, f
PY
out=$("$BIN" scan -q --model-image "$M" --model-synthetic "$tmp/s1.safetensors" "$IMG" 2>&1) || fail "human output: exit $?"
grep -Eq '^FAKE +[0-9.]+%  .*astronaut.png  \(1 face\)  manipulated [0-9.]+%, synthetic [0-9.]+%: synthetic$' <<<"$out" \
  || fail "human line: $out"

# ---- The default: dfd-synthetic-*.safetensors beside the default image model; --no-synthetic.
mkdir -p "$tmp/models"
ln -s "$(realpath "$M")" "$tmp/models/$(basename "$M")"
ln -s "$(realpath "$SRC/models/registry")" "$tmp/models/registry"
cp "$tmp/s1.safetensors" "$tmp/models/dfd-synthetic-1.safetensors"
"$BIN" scan --json -q --models "$tmp/models" "$IMG" >"$tmp/d.json" || fail "default lookup: exit $?"
"$BIN" scan --json -q --models "$tmp/models" --no-synthetic "$IMG" >"$tmp/n.json" || fail "--no-synthetic: exit $?"
python3 - "$tmp/d.json" "$tmp/n.json" "$tmp/none.json" <<'PY' || fail "default synthetic model / --no-synthetic"
import json, sys
d, n, none = (json.load(open(p))["results"][0] for p in sys.argv[1:4])
assert d["model"]["synthetic"] == "dfd-synthetic-1" and d["verdict"] == "FAKE" and d["kind"] == "synthetic", d
assert n["model"]["synthetic"] is None and n["p_synthetic"] is None and n["threshold_synthetic"] is None, n
assert n["kind"] is None and all(f["p_synthetic"] is None and f["kind"] is None for f in n["faces"]), n
# The old verdict: the image model's alone, as before the second detector existed.
strip = lambda r: {k: v for k, v in r.items() if k not in ("timing_ms", "file")}
assert strip(n) == strip(none), (n, none)
assert n["verdict"] == "REAL" and n["p_fake"] == n["p_manipulated"], n
PY

# ---- An image model written before "task" existed is a manipulation model.
$ST "$M" "$tmp/old.safetensors" -task || fail "writing the old model"
python3 -c "import json,struct,sys; f=open(sys.argv[1],'rb'); n=struct.unpack('<Q',f.read(8))[0]; assert 'task' not in json.loads(f.read(n))['__metadata__']" \
  "$tmp/old.safetensors" || fail "the old model still has a task"
"$BIN" scan --json -q --model-image "$tmp/old.safetensors" --model-synthetic "$tmp/s1.safetensors" "$IMG" >"$tmp/o.json" \
  || fail "old model file: exit $?"
python3 - "$tmp/o.json" "$tmp/s1.json" <<'PY' || fail "old model file"
import json, sys
o, s1 = (json.load(open(p))["results"][0] for p in sys.argv[1:3])
assert o["p_manipulated"] == s1["p_manipulated"] and o["kind"] == "synthetic" and o["model"]["image"] == "old", o
PY

# ---- Models in the wrong slot, contradicting options.
"$BIN" scan -q --model-image "$tmp/s1.safetensors" "$IMG" >/dev/null 2>"$tmp/err"
[[ $? == 1 ]] || fail "synthetic model as the image model: exit"
grep -q "is a synthetic-face model (task 'synthetic'); pass it with --model-synthetic" "$tmp/err" || fail "message: $(cat "$tmp/err")"
"$BIN" scan -q --model-image "$M" --model-synthetic "$M" "$IMG" >/dev/null 2>"$tmp/err"
[[ $? == 1 ]] || fail "image model as the synthetic model: exit"
grep -q "is not a synthetic-face image model (task 'manipulation')" "$tmp/err" || fail "message: $(cat "$tmp/err")"
"$BIN" scan -q --model-synthetic "$tmp/s1.safetensors" --no-synthetic "$IMG" >/dev/null 2>&1
[[ $? == 2 ]] || fail "--model-synthetic with --no-synthetic: exit"

# ---- dfd train --task synthetic writes the task; the model runs as the synthetic detector.
"$BIN" train image --arch tiny-cnn --data "$tmp" --task gan --out "$tmp/x" >/dev/null 2>"$tmp/err"
[[ $? == 2 ]] && grep -q "'manipulation' or 'synthetic'" "$tmp/err" || fail "--task gan: $(cat "$tmp/err")"
mkdir -p "$tmp/data/real" "$tmp/data/fake"
ff() { ffmpeg -hide_banner -loglevel error -y "$@" || fail "ffmpeg $*"; }
for i in 0 1 2 3 4 5 6 7; do
  ff -i "$IMG" -vf "crop=300:300:$((100 + i * 5)):$((40 + i * 3)),scale=64:64" "$tmp/data/real/a$i.png"
  ff -i "$IMG" -vf "crop=300:300:$((100 + i * 5)):$((40 + i * 3)),scale=64:64,hue=h=$((90 + i * 10))" "$tmp/data/fake/a$i.png"
done
"$BIN" train image --task synthetic --arch tiny-cnn --input-size 64 --data "$tmp/data" --val-fraction 0.25 --epochs 1 \
  --batch 4 --no-augment --out "$tmp/syn" >"$tmp/train.log" 2>&1 || { cat "$tmp/train.log"; fail "training --task synthetic"; }
python3 -c "import json,struct,sys; f=open(sys.argv[1],'rb'); n=struct.unpack('<Q',f.read(8))[0]; t=json.loads(f.read(n))['__metadata__'].get('task'); assert t == 'synthetic', t" \
  "$tmp/syn/best.safetensors" || fail "trained model's task"
# Resuming goes on with the checkpoint's task, or refuses.
"$BIN" train image --arch tiny-cnn --input-size 64 --data "$tmp/data" --val-fraction 0.25 --epochs 2 --batch 4 --no-augment \
  --out "$tmp/syn" --resume "$tmp/syn/checkpoint.safetensors" >"$tmp/train.log" 2>&1
[[ $? == 1 ]] && grep -q "was trained with --task synthetic; resume it with the same --task (not manipulation)" "$tmp/train.log" \
  || fail "resume without --task: $(tail -3 "$tmp/train.log")"
"$BIN" scan --json -q --model-image "$M" --model-synthetic "$tmp/syn/best.safetensors" "$IMG" >"$tmp/t.json" || fail "trained synthetic model: exit $?"
python3 -c "import json,sys; r=json.load(open(sys.argv[1]))['results'][0]; assert r['model']['synthetic']=='best' and 0<=r['p_synthetic']<=1, r" \
  "$tmp/t.json" || fail "trained synthetic model's result"
echo "synthetic: all checks passed"
