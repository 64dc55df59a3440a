#!/usr/bin/env bash
# `dfd calibrate` (issue 15: a threshold chosen on real faces, low-quality ones included),
# with the shipped image model on real DFDC crops from ../shared/data:
#   - usage errors exit 2, impossible runs exit 1 with a message that says why, before any
#     scoring where it can (the output's folder);
#   - the new threshold is the lowest that flags at most --fpr of the reals: checked against
#     the scores `dfd eval` gives with the written model (the k-th highest real score);
#   - the weights are untouched: eval's scores with the copy equal the original's;
#   - the copy records the rule and its sources; fakes are reported, not used;
#   - --degrade scores degraded copies, the same for the same seed and not for another;
#   - --data-val takes the validation groups `dfd eval --split val` takes.
set -uo pipefail
BIN=${DFD_BIN:-build/dfd}
SRC=${DFD_SOURCE_DIR:-.}
DATA=${DFD_SHARED_DATA:-$SRC/../shared/data}
fail() { echo "FAIL: $*" >&2; exit 1; }
M=$(ls "$SRC"/models/dfd-image-*.safetensors 2>/dev/null | sort | tail -1)
[[ -n "$M" ]] || { echo "skipped: no shipped image model in models/"; exit 77; }
[[ -d "$DATA/dfdc-faces/real" ]] || { echo "skipped: no $DATA/dfdc-faces (the shared data set)"; exit 77; }
command -v python3 >/dev/null || { echo "skipped: python3 missing"; exit 77; }
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT

# A small labelled folder: 40 real and 10 fake crops, each its own group.
mkdir -p "$tmp/d/real" "$tmp/d/fake" "$tmp/fakes/fake"
echo "file,label,group" >"$tmp/d/labels.csv"
for f in $(ls "$DATA/dfdc-faces/real" | sort | head -40); do
  ln -s "$(realpath "$DATA/dfdc-faces/real/$f")" "$tmp/d/real/$f"; echo "real/$f,real,g-$f" >>"$tmp/d/labels.csv"
done
for f in $(ls "$DATA/dfdc-faces/fake" | sort | head -10); do
  ln -s "$(realpath "$DATA/dfdc-faces/fake/$f")" "$tmp/d/fake/$f"; echo "fake/$f,fake,g-$f" >>"$tmp/d/labels.csv"
  ln -s "$(realpath "$DATA/dfdc-faces/fake/$f")" "$tmp/fakes/fake/$f"
done

# ---- Errors.
"$BIN" calibrate --model "$M" --data "$tmp/d" >/dev/null 2>&1; [[ $? == 2 ]] || fail "no --out: exit not 2"
"$BIN" calibrate --model "$M" --out "$tmp/x.safetensors" >/dev/null 2>&1; [[ $? == 2 ]] || fail "no --data: exit not 2"
"$BIN" calibrate --model "$M" --data "$tmp/d" --out "$tmp/x.safetensors" --fpr 0 >"$tmp/e" 2>&1; [[ $? == 2 ]] || fail "--fpr 0: exit not 2"
grep -q "fpr" "$tmp/e" || fail "--fpr 0 message: $(cat "$tmp/e")"
"$BIN" calibrate --model "$M" --data "$tmp/d" --out "$tmp/no/such/x.safetensors" >"$tmp/e" 2>&1; [[ $? == 1 ]] || fail "missing out folder: exit not 1"
grep -q "does not exist" "$tmp/e" || fail "missing out folder message: $(cat "$tmp/e")"
"$BIN" calibrate --model "$M" --data "$tmp/nowhere" --out "$tmp/x.safetensors" >"$tmp/e" 2>&1; [[ $? == 1 ]] || fail "missing data: exit not 1"
"$BIN" calibrate --model "$M" --data "$tmp/fakes" --out "$tmp/x.safetensors" >"$tmp/e" 2>&1; [[ $? == 1 ]] || fail "only fakes: exit not 1"
grep -q "no real face crops" "$tmp/e" || fail "only fakes message: $(cat "$tmp/e")"
"$BIN" calibrate --model "$M" --data "$tmp/d" --fpr 0.01 --out "$tmp/x.safetensors" >"$tmp/e" 2>&1; [[ $? == 1 ]] || fail "too few reals: exit not 1"
grep -q "too few" "$tmp/e" || fail "too few message: $(cat "$tmp/e")"
[[ ! -e "$tmp/x.safetensors" ]] || fail "a failed run wrote a model"

# ---- The threshold: the lowest that flags at most 10% of the 40 reals (4 of them).
"$BIN" calibrate --model "$M" --data "$tmp/d" --fpr 0.1 --out "$tmp/c.safetensors" >"$tmp/c.txt" 2>&1 || fail "calibrate: $(cat "$tmp/c.txt")"
grep -q "^40 real crops$" "$tmp/c.txt" || fail "report: $(cat "$tmp/c.txt")"
grep -q "^10 fake crops" "$tmp/c.txt" || fail "fakes not reported: $(cat "$tmp/c.txt")"
"$BIN" eval --model "$M" --flip --data "$tmp/d" --out "$tmp/e0" >/dev/null 2>&1 || fail "eval of the original"
"$BIN" eval --model "$tmp/c.safetensors" --flip --data "$tmp/d" --out "$tmp/e1" >"$tmp/e1.txt" 2>&1 || fail "eval of the copy: $(cat "$tmp/e1.txt")"
cmp -s <(cut -d, -f1-3 "$tmp/e0/scores.csv") <(cut -d, -f1-3 "$tmp/e1/scores.csv") || fail "the copy scores differently"
python3 - "$tmp/c.safetensors" "$M" "$tmp/e1/scores.csv" <<'PY' || fail "threshold or record"
import csv, json, struct, sys
def meta(p):
    with open(p, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        h = json.loads(f.read(n))
    return h.pop("__metadata__"), h
m, h = meta(sys.argv[1])
m0, h0 = meta(sys.argv[2])
t = float(m["threshold"])
reals = sorted((float(r["p_fake"]) for r in csv.DictReader(open(sys.argv[3])) if r["label"] == "real"), reverse=True)
assert len(reals) == 40
# flags at most 4 (10%), and the next lower real score would flag a fifth
assert sum(p >= t - 5e-7 for p in reals) <= 4 + (reals[3] == reals[4]), (t, reals[:6])
assert abs(t - reals[3]) < 2e-6, (t, reals[:6])
assert abs(t - float(m0["threshold"])) > 1e-6, "threshold unchanged"
c = json.loads(m["calibration"])
assert c["fpr"] == 0.1 and c["reals"] == 40 and c["degraded_copies"] == 0, c
assert abs(c["previous_threshold"] - float(m0["threshold"])) < 1e-9, c
s = c["sources"][0]
assert s["real"] == 40 and s["fake"] == 10 and s["split"] == "all", s
for k in m0:  # every other key kept
    if k not in ("threshold", "dfd_version"):
        assert m[k] == m0[k], k
assert {k: (v["dtype"], v["shape"]) for k, v in h.items()} == {k: (v["dtype"], v["shape"]) for k, v in h0.items()}
PY

# ---- Degraded copies: deterministic per seed.
for s in 1 1 2; do
  "$BIN" calibrate --model "$M" --data "$tmp/d" --fpr 0.1 --degrade 2 --seed $s --out "$tmp/g.safetensors" >"$tmp/g.txt" 2>&1 \
    || fail "--degrade: $(cat "$tmp/g.txt")"
  grep -q "^40 real crops and 80 degraded copies$" "$tmp/g.txt" || fail "--degrade report: $(cat "$tmp/g.txt")"
  python3 -c "import json,struct,sys; f=open(sys.argv[1],'rb'); n=struct.unpack('<Q',f.read(8))[0]; print(json.loads(f.read(n))['__metadata__']['threshold'])" \
    "$tmp/g.safetensors" >>"$tmp/thresholds"
done
t=($(cat "$tmp/thresholds"))
[[ ${t[0]} == "${t[1]}" ]] || fail "the same seed gave thresholds ${t[0]} and ${t[1]}"
[[ ${t[0]} != "${t[2]}" ]] || fail "another seed gave the same threshold ${t[0]}: the copies are not degraded at random"
c1=$(python3 -c "import json,struct,sys; f=open(sys.argv[1],'rb'); n=struct.unpack('<Q',f.read(8))[0]; print(json.loads(f.read(n))['__metadata__']['threshold'])" "$tmp/c.safetensors")
[[ ${t[0]} != "$c1" ]] || fail "--degrade 2 gave the threshold of no degradation"

# ---- --data-val: the validation groups, as eval --split val picks them.
"$BIN" eval --model "$M" --data "$tmp/d" --split val --out "$tmp/ev" >/dev/null 2>&1 || fail "eval --split val"
nv=$(awk -F, 'NR > 1 && $2 == "real"' "$tmp/ev/scores.csv" | wc -l)
(( nv > 0 && nv < 40 )) || fail "validation split of $nv reals"
"$BIN" calibrate --model "$M" --data-val "$tmp/d" --fpr 0.5 --out "$tmp/v.safetensors" >"$tmp/v.txt" 2>&1 || fail "--data-val: $(cat "$tmp/v.txt")"
grep -q "^$nv real crops$" "$tmp/v.txt" || fail "--data-val took other crops than eval's $nv: $(cat "$tmp/v.txt")"
grep -q "(val)" "$tmp/v.txt" || fail "--data-val not named in the report"
echo "ok"
