#!/usr/bin/env bash
# `dfd serve` with two detectors, over HTTP: the shipped image model and a synthetic-face
# stand-in (the same weights re-saved with task "synthetic" at 160 px, its threshold set
# below the astronaut's synthetic score, which `dfd scan` measures first). /v1/models lists
# both with their task and threshold; /v1/analyze gives FAKE of kind synthetic with both
# scores; /predict_image keeps its exact four fields and follows the combined verdict. A
# second server with --no-synthetic lists no synthetic model, gives null synthetic fields
# and the image model's own verdict. A default synthetic model that does not load leaves the
# server up but degraded, naming the file.
set -uo pipefail
BIN=${DFD_BIN:-build/dfd}
SRC=${DFD_SOURCE_DIR:-.}
tmp=$(mktemp -d)
pid=
cleanup() { [[ -n $pid ]] && kill -KILL "$pid" 2>/dev/null; rm -rf "$tmp"; }
trap cleanup EXIT
fail() {
  echo "FAIL: $*" >&2
  [[ -f $tmp/serve.log ]] && { echo "--- server log:" >&2; tail -n 20 "$tmp/serve.log" >&2; }
  exit 1
}
skip() { echo "skipped: $*" >&2; exit 77; }
for p in curl node python3; do command -v $p >/dev/null || skip "needs $p"; done
[[ -f $SRC/models/registry/blazeface-short.safetensors ]] || skip "face models missing (run ./setup.sh)"
M=$(ls "$SRC"/models/dfd-image-*.safetensors 2>/dev/null | sort | tail -1)
[[ -n "$M" ]] || skip "no shipped image model in models/"
export DFD_MODELS_DIR="$SRC/models/registry"
IMG="$SRC/examples/astronaut.png"
js() { node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>{const j=JSON.parse(s);const v=('"$1"');console.log(typeof v==="string"?v:JSON.stringify(v))})'; }
req() { curl -s -o "$tmp/body" -w '%{http_code}' "$@"; }
body() { cat "$tmp/body"; }
start() {  # start ARGS...: a server on a free port; sets pid and U
  "$BIN" serve --port 0 --model-image "$M" --workers 1 --threads 2 "$@" 2>"$tmp/serve.log" &
  pid=$!
  for _ in $(seq 300); do grep -q 'listening on' "$tmp/serve.log" && break; kill -0 $pid 2>/dev/null || break; sleep 0.1; done
  local port; port=$(sed -n 's|.*listening on http://127.0.0.1:\([0-9]*\)/.*|\1|p' "$tmp/serve.log")
  [[ -n $port ]] || fail "the server did not start"
  U=http://127.0.0.1:$port
}
stop() { kill -TERM $pid; wait $pid; local rc=$?; pid=; [[ $rc == 0 ]] || fail "server exit status $rc"; }

# The stand-in, with its threshold 0.9 x the astronaut's synthetic score (scan measures it).
python3 "$SRC/tests/cli/st_meta.py" "$M" "$tmp/s0.safetensors" task=synthetic input_size=160 threshold=1 || fail "stand-in"
"$BIN" scan --json -q --model-image "$M" --model-synthetic "$tmp/s0.safetensors" "$IMG" >"$tmp/s0.json" || fail "scan: exit $?"
t=$(js '(0.9*j.results[0].p_synthetic).toFixed(6)' <"$tmp/s0.json")
pm=$(js 'j.results[0].p_manipulated' <"$tmp/s0.json")
python3 "$SRC/tests/cli/st_meta.py" "$M" "$tmp/dfd-synthetic-test.safetensors" task=synthetic input_size=160 threshold="$t" ||
  fail "stand-in"

start --model-synthetic "$tmp/dfd-synthetic-test.safetensors"
[[ $(req "$U/v1/models") == 200 ]] || fail "models: $(body)"
got=$(js "[j.image_model.task, j.synthetic_model.task, j.synthetic_model.name, j.synthetic_model.input_size,
          Math.abs(j.synthetic_model.threshold-$t)<1e-9, j.loaded].join(' ')" <"$tmp/body")
[[ $got == "manipulation synthetic dfd-synthetic-test 160 true true" ]] || fail "models lists both ($got): $(body)"
tm=$(js j.image_model.threshold <"$tmp/body")
[[ $(req -F "file=@$IMG" "$U/v1/analyze") == 200 ]] || fail "analyze: $(body)"
r='j.results[0]'
got=$(js "[$r.verdict, $r.kind, $r.faces[0].kind, $r.model.synthetic, $r.p_fake==$r.p_synthetic,
          Math.abs($r.threshold-$t)<1e-6, Math.abs($r.threshold_manipulated-$tm)<1e-6,
          Math.abs($r.p_manipulated-$pm)<1e-6, $r.p_manipulated<$r.threshold_manipulated].join(' ')" <"$tmp/body")
[[ $got == "FAKE synthetic synthetic dfd-synthetic-test true true true true true" ]] || fail "analyze fields ($got): $(body)"
ps=$(js "$r.p_synthetic" <"$tmp/body")
# The original's route: the same four fields, the combined verdict, raw_score = 1 - p_fake.
[[ $(req -F "file=@$IMG" "$U/predict_image") == 200 ]] || fail "predict_image: $(body)"
[[ $(js 'Object.keys(j).sort().join(",")' <"$tmp/body") == confidence,error,prediction,raw_score ]] ||
  fail "predict_image fields: $(body)"
[[ $(js "j.prediction+' '+(Math.abs(j.raw_score-(1-$ps))<1e-6)" <"$tmp/body") == "FAKE true" ]] || fail "predict_image: $(body)"
stop

start --no-synthetic
[[ $(req "$U/v1/models") == 200 ]] || fail "models: $(body)"
[[ $(js 'j.synthetic_model' <"$tmp/body") == null ]] || fail "--no-synthetic lists a synthetic model: $(body)"
[[ $(req -F "file=@$IMG" "$U/v1/analyze") == 200 ]] || fail "analyze: $(body)"
got=$(js "JSON.stringify([$r.verdict, $r.kind, $r.p_synthetic, $r.threshold_synthetic, $r.model.synthetic,
          $r.faces[0].p_synthetic, $r.faces[0].kind, Math.abs($r.p_fake-$pm)<1e-6])" <"$tmp/body")
[[ $got == '["REAL",null,null,null,null,null,null,true]' ]] || fail "--no-synthetic fields ($got): $(body)"
[[ $(req -F "file=@$IMG" "$U/predict_image") == 200 ]] || fail "predict_image: $(body)"
[[ $(js "j.prediction+' '+(Math.abs(j.raw_score-(1-$pm))<1e-6)" <"$tmp/body") == "REAL true" ]] || fail "predict_image: $(body)"
stop

# A default synthetic-face model that does not load: the server starts, degraded, saying why.
mkdir -p "$tmp/models"
ln -s "$(realpath "$M")" "$tmp/models/$(basename "$M")"
ln -s "$(realpath "$SRC/models/registry")" "$tmp/models/registry"
head -c 1000 "$tmp/dfd-synthetic-test.safetensors" >"$tmp/models/dfd-synthetic-9.safetensors"
"$BIN" serve --port 0 --models "$tmp/models" --workers 1 --threads 2 2>"$tmp/serve.log" &
pid=$!
for _ in $(seq 300); do grep -q 'listening on' "$tmp/serve.log" && break; kill -0 $pid 2>/dev/null || break; sleep 0.1; done
port=$(sed -n 's|.*listening on http://127.0.0.1:\([0-9]*\)/.*|\1|p' "$tmp/serve.log")
[[ -n $port ]] || fail "the server did not start with a broken default synthetic model"
U=http://127.0.0.1:$port
[[ $(req "$U/v1/health") == 503 ]] || fail "health with a broken synthetic model: $(body)"
[[ $(js "j.status+' '+/dfd-synthetic-9/.test(j.error)" <"$tmp/body") == "degraded true" ]] || fail "health: $(body)"
stop
echo "server_synthetic: all checks passed"
