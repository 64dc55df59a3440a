#!/usr/bin/env bash
# `dfd serve` end to end: the real binary with a real model (tiny-cnn, trained here in a
# second on a dozen crops: it proves the plumbing, not accuracy), driven with curl as the
# original's clients were: the original's routes and fields, the v1 document, a video job
# polled to completion and one cancelled, the upload limit to the byte, unknown media,
# malformed multipart, metrics, the log, and SIGTERM finishing a request in flight with
# no upload left behind.
set -uo pipefail
BIN=${DFD_BIN:-build/dfd}
SRC=${DFD_SOURCE_DIR:-.}
tmp=$(mktemp -d)
pid=
cleanup() { [[ -n $pid ]] && kill -KILL "$pid" 2>/dev/null; rm -rf "$tmp"; }
trap cleanup EXIT
fail() {
  echo "FAIL: $*" >&2
  [[ -f $tmp/serve.log ]] && { echo "--- server log:" >&2; tail -n 25 "$tmp/serve.log" >&2; }
  exit 1
}
skip() { echo "skipped: $*" >&2; exit 77; }

for p in curl ffmpeg node; do command -v $p >/dev/null || skip "needs $p (setup.sh installs it)"; done
[[ -f $SRC/models/registry/blazeface-short.safetensors ]] ||
  skip "the face detector is not converted yet (setup.sh writes models/registry/)"

# js EXPR: evaluates EXPR with j = the JSON read from stdin, prints the result.
js() { node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>{const j=JSON.parse(s);const v=('"$1"');console.log(typeof v==="string"?v:JSON.stringify(v))})'; }
# req ARGS...: curl, body to $tmp/body, prints the status code.
req() { curl -s -o "$tmp/body" -w '%{http_code}' "$@"; }
body() { cat "$tmp/body"; }

# ---- a tiny model ---------------------------------------------------------------------
mkdir -p "$tmp/tmp"
source "$SRC/tests/cli/lib/tiny_model.sh"
tiny_model "$tmp"
MODEL=$tmp/model/best.safetensors

# ---- the server ---------------------------------------------------------------------------
TMPDIR=$tmp/tmp "$BIN" serve --port 0 --model-image "$MODEL" --no-synthetic --frames 2 --max-upload-mb 1 --workers 1 \
  --threads 2 --timeout 5 2>"$tmp/serve.log" &
pid=$!
for _ in $(seq 300); do grep -q 'listening on' "$tmp/serve.log" && break; kill -0 $pid 2>/dev/null || break; sleep 0.1; done
port=$(sed -n 's|.*listening on http://127.0.0.1:\([0-9]*\)/.*|\1|p' "$tmp/serve.log")
[[ -n $port ]] || fail "the server did not start"
U=http://127.0.0.1:$port

# GET /: the original's status for API clients, the page for browsers.
[[ $(curl -s "$U/") == '{"status":"Deepfake Detector API is online and running."}' ]] || fail "GET / JSON: $(curl -s "$U/")"
grep -q '<title>Deepfake Detector</title>' <<<"$(curl -s -H 'Accept: text/html,*/*' "$U/")" || fail "GET / page"
[[ $(req "$U/v1/health") == 200 ]] || fail "health $(body)"
[[ $(js j.status <"$tmp/body") == ok ]] || fail "health: $(body)"
# /v1/models tells the model file's own metadata: name, architecture, threshold, crop contract.
curl -s "$U/v1/models" >"$tmp/models"
[[ $(js "[j.image_model.name,j.image_model.architecture,j.image_model.preprocess.size,j.loaded].join(' ')" <"$tmp/models") == "best tiny-cnn 32 true" ]] ||
  fail "models: $(cat "$tmp/models")"
thr=$(js j.image_model.threshold <"$tmp/models")
curl -s "$U/openapi.json" | js 'Object.keys(j.paths).length' >/dev/null || fail "openapi.json is not JSON"

# The original's /predict_image with curl -F, as its README showed.
[[ $(req -F "file=@$SRC/examples/astronaut.jpg" "$U/predict_image") == 200 ]] || fail "predict_image: $(body)"
[[ $(js 'Object.keys(j).sort().join(",")' <"$tmp/body") == confidence,error,prediction,raw_score ]] ||
  fail "predict_image fields: $(body)"
pred=$(js j.prediction <"$tmp/body"); raw=$(js j.raw_score <"$tmp/body")
[[ $pred == REAL || $pred == FAKE ]] || fail "prediction: $(body)"
[[ $(js 'j.error===null && Math.abs(j.confidence-100*Math.max(j.raw_score,1-j.raw_score))<1e-6' <"$tmp/body") == true ]] ||
  fail "confidence is not 100*max(p,1-p): $(body)"

# The same image through v1: the dfd.result/1 document, consistent with the answer above.
[[ $(req -F "file=@$SRC/examples/astronaut.jpg" "$U/v1/analyze") == 200 ]] || fail "v1 image: $(body)"
r='j.results[0]'
[[ $(js "j.schema+' '+$r.file+' '+$r.media" <"$tmp/body") == "dfd.result/1 astronaut.jpg image" ]] || fail "v1 doc: $(body)"
[[ $(js "$r.faces.length>=1 && $r.faces.every(f=>f.box.length==4 && f.box[0]>=0 && f.box[0]+f.box[2]<=512.5)" <"$tmp/body") == true ]] ||
  fail "faces: $(body)"
[[ $(js "Math.abs($r.p_fake-(1-$raw))<1e-6" <"$tmp/body") == true ]] || fail "p_fake != 1-raw_score ($raw): $(body)"
[[ $(js "($r.p_fake>=$r.threshold?'FAKE':'REAL')==$r.verdict && $r.verdict=='$pred' && Math.abs($r.threshold-$thr)<1e-6" <"$tmp/body") == true ]] ||
  fail "verdict vs threshold $thr: $(body)"
# A raw body with a content type works too; the name is then 'upload'.
[[ $(req --data-binary "@$SRC/examples/astronaut.png" -H 'Content-Type: image/png' "$U/v1/analyze") == 200 ]] ||
  fail "raw body: $(body)"
[[ $(js "$r.file" <"$tmp/body") == upload ]] || fail "raw body name: $(body)"

# No face: 422 on the original's route, NO_FACE in the document.
[[ $(req -F "file=@$SRC/examples/chelsea.png" "$U/predict_image") == 422 ]] || fail "cat predict: $(body)"
[[ $(body) == '{"prediction":null,"error":"no face found"}' ]] || fail "cat body: $(body)"
[[ $(req -F "file=@$SRC/examples/chelsea.png" "$U/v1/analyze") == 200 ]] || fail "cat v1: $(body)"
[[ $(js "$r.verdict+' '+$r.p_fake" <"$tmp/body") == "NO_FACE null" ]] || fail "cat verdict: $(body)"

# A video: 202 and a job, polled to completion with progress that never goes back.
[[ $(req -F "file=@$SRC/examples/astronaut-clip.mp4" "$U/v1/analyze") == 202 ]] || fail "video: $(body)"
id=$(js j.job_id <"$tmp/body")
last=0; state=
for _ in $(seq 600); do
  curl -s "$U/v1/jobs/$id" >"$tmp/job"
  state=$(js j.state <"$tmp/job"); p=$(js j.progress <"$tmp/job")
  [[ $(node -e "console.log($p>=$last && $p<=1)") == true ]] || fail "progress went from $last to $p"
  last=$p
  [[ $state == queued || $state == running ]] || break
  sleep 0.2
done
[[ $state == done ]] || fail "video job ended $state: $(cat "$tmp/job")"
[[ $(js "j.result.results[0].media+' '+j.result.results[0].frames.length" <"$tmp/job") == "video 2" ]] ||
  fail "video result: $(cat "$tmp/job")"
[[ $(js "j.result.results[0].frames.every((f,i,a)=>i==0||f.time_s>a[i-1].time_s)" <"$tmp/job") == true ]] ||
  fail "frame times: $(cat "$tmp/job")"
vp=$(js "j.result.results[0].p_fake" <"$tmp/job")
# The original's synchronous /predict_video on the same clip agrees with the job.
[[ $(req -F "file=@$SRC/examples/astronaut-clip.mp4" "$U/predict_video") == 200 ]] || fail "predict_video: $(body)"
if [[ $vp != null ]]; then
  [[ $(js "Math.abs(j.raw_score-(1-$vp))<1e-4" <"$tmp/body") == true ]] || fail "predict_video vs job ($vp): $(body)"
fi
[[ $(curl -s -X DELETE "$U/v1/jobs/$id" | js j.deleted) == true ]] || fail "delete a finished job"
[[ $(req "$U/v1/jobs/$id") == 404 ]] || fail "deleted job still there"

# A job cancelled while it runs (or waits): it ends cancelled, with no result.
[[ $(req -F "file=@$SRC/examples/astronaut-clip.mp4" "$U/v1/analyze") == 202 ]] || fail "video 2: $(body)"
id=$(js j.job_id <"$tmp/body")
code=$(req -X DELETE "$U/v1/jobs/$id")
[[ $code == 200 || $code == 202 ]] || fail "cancel: $code $(body)"
n_cancelled=1
if [[ $(js "j.deleted===true" <"$tmp/body") == true ]]; then
  n_cancelled=0
  # On an idle machine the 2-frame job can finish before the DELETE arrives: then the
  # DELETE removes a finished job, which must be gone.
  [[ $(req "$U/v1/jobs/$id") == 404 ]] || fail "job finished before the cancel, deleted, still there"
else
  for _ in $(seq 300); do
    state=$(curl -s "$U/v1/jobs/$id" | js j.state)
    [[ $state == queued || $state == running ]] || break
    sleep 0.1
  done
  [[ $state == cancelled ]] || fail "cancelled job ended $state"
fi

# The limit, to the byte: 1 MiB passes the limit (and is then unknown media), 1 MiB + 1 does not.
head -c 1048576 /dev/zero >"$tmp/exact"; head -c 1048577 /dev/zero >"$tmp/over"
[[ $(req --data-binary "@$tmp/exact" -H 'Content-Type: application/octet-stream' "$U/v1/analyze") == 415 ]] ||
  fail "1 MiB: $(body)"
[[ $(req --data-binary "@$tmp/over" -H 'Content-Type: application/octet-stream' "$U/v1/analyze") == 413 ]] ||
  fail "1 MiB + 1: $(body)"
js j.error <"$tmp/body" | grep -q 'over the limit of 1048576 bytes' || fail "413 message: $(body)"
[[ $(req -F "file=@$tmp/over" "$U/predict_image") == 413 ]] || fail "multipart over the limit: $(body)"
# Unknown media, by content whatever the name says; malformed multipart.
echo "hello" >"$tmp/photo.jpg"
[[ $(req -F "file=@$tmp/photo.jpg" "$U/predict_image") == 415 ]] || fail "text as jpg: $(body)"
js j.error <"$tmp/body" | grep -q 'unsupported format' || fail "415 message: $(body)"
printf -- '--XX\r\nContent-Disposition: form-data; name="file"; filename="a.jpg"\r\n\r\n\xff\xd8\xff' >"$tmp/trunc"
[[ $(req --data-binary "@$tmp/trunc" -H 'Content-Type: multipart/form-data; boundary=XX' "$U/predict_image") == 400 ]] ||
  fail "truncated multipart: $(body)"
js j.error <"$tmp/body" | grep -q 'truncated' || fail "400 message: $(body)"

# Metrics moved; one log line per request.
curl -s "$U/metrics" >"$tmp/metrics"
grep -q '^dfd_http_requests_total{route="/predict_image",status="200"} 1$' "$tmp/metrics" || fail "metrics: $(grep requests_total "$tmp/metrics")"
grep -q '^dfd_http_requests_total{route="/v1/analyze",status="413"} 1$' "$tmp/metrics" || fail "metrics 413"
if ((n_cancelled)); then
  grep -q '^dfd_jobs_finished_total{state="cancelled"} 1$' "$tmp/metrics" || fail "metrics cancelled"
fi
grep -q '^dfd_queue_depth 0$' "$tmp/metrics" || fail "metrics queue depth"
grep -Eq 'POST /predict_image 200 [0-9]+ [0-9.]+ms' "$tmp/serve.log" || fail "no log line for predict_image"

# SIGTERM while an image is analysed: its client still gets the answer, then the server
# exits 0, and nothing it stored is left behind.
curl -s -o "$tmp/late" -w '%{http_code}' -F "file=@$SRC/examples/astronaut.png" "$U/predict_image" >"$tmp/late.code" &
cpid=$!
for _ in $(seq 100); do grep -q 'dfd_jobs_running 1' <(curl -s "$U/metrics") && break; sleep 0.05; done
kill -TERM $pid
wait $cpid
[[ $(cat "$tmp/late.code") == 200 ]] || fail "request in flight at SIGTERM: $(cat "$tmp/late.code") $(cat "$tmp/late")"
wait $pid; rc=$?; pid=
[[ $rc == 0 ]] || fail "server exit status $rc after SIGTERM"
grep -q 'dfd serve: stopped' "$tmp/serve.log" || fail "no clean stop"
[[ -z $(ls -A "$tmp/tmp") ]] || fail "left behind: $(ls -R "$tmp/tmp")"
curl -s -m 2 "$U/" >/dev/null && fail "still answering after stop"
echo "server_e2e: all checks passed"
