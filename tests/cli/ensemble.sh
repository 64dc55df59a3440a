#!/usr/bin/env bash
# `dfd ensemble` (issue 15: several models trained alike, their logits averaged), with the
# two shipped manipulation models on real DFDC crops from ../shared/data:
#   - usage errors exit 2; members that do not fit together exit 1 saying why (another
#     task, an ensemble inside an ensemble, the same file twice), and nothing is written;
#   - the written file loads as any model: `dfd eval` scores each crop with the sigmoid of
#     the mean of the members' logits (checked against each member's own scores);
#   - the stored threshold is the given one, or the members' averaged as logits;
#   - `dfd scan` runs it and reports its name; `dfd train --init` does not take it.
set -uo pipefail
BIN=${DFD_BIN:-build/dfd}
SRC=${DFD_SOURCE_DIR:-.}
DATA=${DFD_SHARED_DATA:-$SRC/../shared/data}
fail() { echo "FAIL: $*" >&2; exit 1; }
A=$SRC/models/dfd-image-2.safetensors B=$SRC/models/dfd-image-3.safetensors S=$SRC/models/dfd-synthetic-1.safetensors
for m in "$A" "$B" "$S"; do [[ -f $m ]] || { echo "skipped: no $m"; exit 77; }; done
[[ -d "$DATA/dfdc-faces/real" ]] || { echo "skipped: no $DATA/dfdc-faces (the shared data set)"; exit 77; }
command -v python3 >/dev/null || { echo "skipped: python3 missing"; exit 77; }
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT

# 12 real and 12 fake crops.
mkdir -p "$tmp/d/real" "$tmp/d/fake"
for c in real fake; do
  for f in $(ls "$DATA/dfdc-faces/$c" | sort | head -12); do ln -s "$(realpath "$DATA/dfdc-faces/$c/$f")" "$tmp/d/$c/$f"; done
done

# ---- Errors.
"$BIN" ensemble "$A" "$B" >/dev/null 2>&1; [[ $? == 2 ]] || fail "no --out: exit not 2"
"$BIN" ensemble --out "$tmp/x.safetensors" "$A" >/dev/null 2>&1; [[ $? == 2 ]] || fail "one model: exit not 2"
"$BIN" ensemble --out "$tmp/x.safetensors" --threshold 1.5 "$A" "$B" >/dev/null 2>&1; [[ $? == 2 ]] || fail "--threshold 1.5: exit not 2"
"$BIN" ensemble --out "$tmp/x.safetensors" "$B" "$S" >"$tmp/e" 2>&1; [[ $? == 1 ]] || fail "another task: exit not 1"
grep -q "detects synthetic" "$tmp/e" || fail "another task message: $(cat "$tmp/e")"
"$BIN" ensemble --out "$tmp/x.safetensors" "$B" "$B" >"$tmp/e" 2>&1; [[ $? == 1 ]] || fail "same file twice: exit not 1"
grep -q "named twice" "$tmp/e" || fail "same file twice message: $(cat "$tmp/e")"
"$BIN" ensemble --out "$tmp/x.safetensors" "$B" "$tmp/none.safetensors" >"$tmp/e" 2>&1; [[ $? == 1 ]] || fail "missing member: exit not 1"
[[ ! -e "$tmp/x.safetensors" ]] || fail "a failed run wrote a model"

# ---- An ensemble of the two, with the default threshold and with a given one.
"$BIN" ensemble --out "$tmp/e.safetensors" "$A" "$B" >"$tmp/o" 2>&1 || fail "ensemble: $(cat "$tmp/o")"
grep -q "ensemble of 2 mobilenet_v2-image models" "$tmp/o" || fail "summary: $(cat "$tmp/o")"
"$BIN" ensemble --out "$tmp/t.safetensors" --threshold 0.6 "$A" "$B" >/dev/null 2>&1 || fail "ensemble --threshold"
"$BIN" ensemble --out "$tmp/n.safetensors" "$tmp/e.safetensors" "$B" >"$tmp/e" 2>&1; [[ $? == 1 ]] || fail "nested: exit not 1"
grep -q "itself an ensemble" "$tmp/e" || fail "nested message: $(cat "$tmp/e")"
for m in a:"$A" b:"$B" e:"$tmp/e.safetensors"; do
  "$BIN" eval --model "${m#*:}" --data "$tmp/d" --out "$tmp/ev-${m%%:*}" >"$tmp/ev.txt" 2>&1 || fail "eval ${m%%:*}: $(cat "$tmp/ev.txt")"
done
python3 - "$tmp" "$A" "$B" <<'PY' || fail "ensemble scores or metadata"
import csv, json, math, struct, sys
tmp, a, b = sys.argv[1:4]
def meta(p):
    with open(p, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        return json.loads(f.read(n))["__metadata__"]
def scores(k):
    with open(f"{tmp}/ev-{k}/scores.csv") as f:
        return {r["name"]: float(r["p_fake"]) for r in csv.DictReader(f)}
lg = lambda p: math.log(p / (1 - p))
sa, sb, se = scores("a"), scores("b"), scores("e")
assert len(se) == 24 and se.keys() == sa.keys(), (len(se), len(sa))
worst = 0
for k in se:
    want = (lg(sa[k]) + lg(sb[k])) / 2
    worst = max(worst, abs(lg(se[k]) - want) / (1 + abs(want)))
# the members' logits pass between layers in bf16 (3 significant digits)
assert worst < 0.02, f"ensemble logit off the members' mean by {worst:.4f} (relative)"
assert any(abs(lg(sa[k]) - lg(sb[k])) > 0.5 for k in se), "the members agree everywhere: the test shows nothing"
me, ma, mb = meta(f"{tmp}/e.safetensors"), meta(a), meta(b)
assert me["members"] == "2", me.get("members")
want = 1 / (1 + math.exp(-(lg(float(ma["threshold"])) + lg(float(mb["threshold"]))) / 2))
assert abs(float(me["threshold"]) - want) < 1e-9, (me["threshold"], want)
assert abs(float(meta(f"{tmp}/t.safetensors")["threshold"]) - 0.6) < 1e-12
assert me["preprocess"] == mb["preprocess"] and me["task"] == "manipulation"
assert "dfd-image-2" in me["training_data"] and "dfd-image-3" in me["training_data"]
PY

# ---- scan takes it as the image model, heat maps included; train does not start from it.
"$BIN" scan --json --no-synthetic --model-image "$tmp/e.safetensors" "$SRC/examples/astronaut.jpg" >"$tmp/s.json" 2>"$tmp/s.err" || fail "scan: $(cat "$tmp/s.err")"
python3 -c "import json,sys; r=json.load(open(sys.argv[1]))['results'][0]; assert r['model']['image'] == 'e' and r['threshold'] > 0 and r['faces'], r" "$tmp/s.json" || fail "scan does not use the ensemble"
"$BIN" scan --json --no-synthetic --explain --model-image "$tmp/e.safetensors" "$SRC/examples/astronaut.jpg" >"$tmp/x.json" 2>"$tmp/x.err" || fail "scan --explain: $(cat "$tmp/x.err")"
python3 -c "
import json, sys
h = json.load(open(sys.argv[1]))['results'][0]['faces'][0]['heatmap']
m = [v for row in h['manipulated'] for v in row]
assert h['method'] == 'occlusion-fast' and len(m) == h['grid'] ** 2 and max(m) == 1 and min(m) >= 0, h
" "$tmp/x.json" || fail "no heat map from the ensemble"
# A synthetic-face ensemble (two copies of the shipped one): its Grad-CAM++ map spans both
# networks and, the members being the same, matches the single model's.
cp "$S" "$tmp/s2.safetensors"
"$BIN" ensemble --out "$tmp/se.safetensors" "$S" "$tmp/s2.safetensors" >/dev/null 2>&1 || fail "synthetic ensemble"
for m in s:"$S" se:"$tmp/se.safetensors"; do
  "$BIN" scan --json --explain --model-image "$B" --model-synthetic "${m#*:}" "$SRC/examples/astronaut.jpg" >"$tmp/${m%%:*}.json" 2>"$tmp/x.err" || fail "scan --explain with ${m%%:*}: $(cat "$tmp/x.err")"
done
python3 - "$tmp/s.json" "$tmp/se.json" <<'PY' || fail "the synthetic ensemble's heat map"
import json, sys
maps = []
for p in sys.argv[1:3]:
    h = json.load(open(p))["results"][0]["faces"][0]["heatmap"]
    assert h["method_synthetic"] == "gradcam++" and h["synthetic"], h
    maps.append([v for row in h["synthetic"] for v in row])
a, b = maps
ma, mb = sum(a) / len(a), sum(b) / len(b)
cov = sum((x - ma) * (y - mb) for x, y in zip(a, b))
r = cov / (sum((x - ma) ** 2 for x in a) * sum((y - mb) ** 2 for y in b)) ** 0.5
assert r > 0.95, f"maps of one model and of its two-copy ensemble correlate at {r:.3f}"
PY
"$BIN" train image --arch mobilenet_v2-image --input-size 128 --data "$tmp/d" --init "$tmp/e.safetensors" --epochs 1 --out "$tmp/tr" >"$tmp/e" 2>&1; rc=$?; [[ $rc == 1 ]] && grep -q "is an ensemble of 2 networks" "$tmp/e" || fail "train --init ensemble: exit $rc: $(tail -3 "$tmp/e")"
echo "ok"
