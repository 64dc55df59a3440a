#!/usr/bin/env bash
# `dfd serve --broker` + `dfd worker` against a real redis-server started here (loopback,
# a free port, its own folder, append-only file on, no RDB snapshots): 1 server and 2
# workers take 40 jobs (images and clips); one worker is killed with SIGKILL in the middle
# of a job and the server is killed and restarted mid-run: all 40 end done, with the
# results `dfd scan` gives for the same files, each stored exactly once, the killed job
# after 2 attempts. Then: the synchronous routes through the broker, a job cancelled
# while it runs on a worker ends "cancelled", an upload through a --spool folder, and
# Redis stopped and started again gives 503 meanwhile (the processes live on) and normal
# service after, with the jobs kept; a job past --max-attempts is failed with the reason;
# a URL with a password and a database works, and a wrong password gives 503.
set -uo pipefail
BIN=${DFD_BIN:-build/dfd}
SRC=${DFD_SOURCE_DIR:-.}
DATA=${DFD_SHARED_DATA:-$SRC/../shared/data}
tmp=$(mktemp -d)
pids=()
redis_pid=
cleanup() {
  for p in "${pids[@]}"; do kill -KILL "$p" 2>/dev/null; done
  [[ -n $redis_pid ]] && kill -KILL "$redis_pid" 2>/dev/null
  wait 2>/dev/null
  rm -rf "$tmp"
}
trap cleanup EXIT
fail() {
  echo "FAIL: $*" >&2
  for f in "$tmp"/*.log; do [[ -f $f ]] && { echo "--- $(basename "$f"):" >&2; tail -n 15 "$f" >&2; }; done
  exit 1
}
skip() { echo "skipped: $*" >&2; exit 77; }
t_start=$(date +%s)

command -v redis-server >/dev/null || skip "needs redis-server (apt-get install redis-server; setup.sh installs it)"
for p in curl ffmpeg jq; do command -v $p >/dev/null || skip "needs $p (setup.sh installs it)"; done
[[ -f $SRC/models/registry/blazeface-short.safetensors ]] ||
  skip "the face detector is not converted yet (setup.sh writes models/registry/)"

jv() { jq -r "$1"; } # jv FILTER: a field of the JSON on stdin (jq starts in a few ms; many polls)
req() { curl -s -m 30 -o "$tmp/body" -w '%{http_code}' "$@"; }
body() { cat "$tmp/body"; }

# ---- a tiny model (tests/cli/lib/tiny_model.sh: it proves the plumbing, not accuracy) -------
mkdir -p "$tmp/tmp" "$tmp/redis" "$tmp/spool"
source "$SRC/tests/cli/lib/tiny_model.sh"
tiny_model "$tmp"
MODEL=$tmp/model/best.safetensors
FRAMES=6
# A long clip (the astronaut, still, 40 s): slow enough to be killed or cancelled mid-run.
ffmpeg -loglevel error -y -loop 1 -i "$SRC/examples/astronaut.png" -t 40 -r 10 -vf scale=768:768 -pix_fmt yuv420p \
  "$tmp/long.mp4" || fail "ffmpeg long clip"
# For the cancel: one keyframe in 1,000 frames, so reaching each sampled frame decodes all
# those before it, at 2560 x 2560: about 1.5 s of work on an idle 2-core machine, time for
# a DELETE to land. (At 768 x 768 the still frames decoded so fast that the whole job took
# 0.3 s, and an idle machine could finish three in a row before their cancels arrived.)
# MPEG-4 part 2: a still clip this large encodes in seconds, where H.264 takes far longer.
ffmpeg -loglevel error -y -loop 1 -i "$SRC/examples/astronaut.png" -t 40 -r 25 -g 1000 -vf scale=2560:2560 \
  -c:v mpeg4 -q:v 5 -pix_fmt yuv420p "$tmp/slow.mp4" || fail "ffmpeg slow clip"

# ---- the files and their reference results (dfd scan, same model and options) ----------------
# Jobs 2..40 go round `files`; jobs 10 and 30 are a DFDC clip when the data is there.
files=("$SRC/examples/astronaut.jpg" "$SRC/examples/chelsea.png" "$SRC/examples/astronaut.png"
       "$SRC/examples/astronaut-clip.mp4")
dfdc=
if [[ -d $DATA/videos ]]; then
  for v in "$DATA"/videos/*.mp4; do dfdc=$v; break; done
fi
[[ -n $dfdc ]] ||
  echo "note: no $DATA/videos: the clips are examples/astronaut-clip.mp4 and a generated one only" >&2
declare -A ref
for f in "${files[@]}" "$tmp/long.mp4" $dfdc; do
  "$BIN" scan --json --model-image "$MODEL" --no-synthetic --frames $FRAMES --threads 1 "$f" >"$tmp/ref.json" 2>>"$tmp/scan.log" ||
    [[ $? -le 1 ]] || fail "scan $f"
  ref[$f]=$(jv '.results[0] | "\(.verdict) \(.p_fake)"' <"$tmp/ref.json")
done

# ---- Redis on a free loopback port -------------------------------------------------------------
start_redis() {
  for _ in 1 2 3 4 5; do
    [[ -n ${RPORT:-} && ${1:-} == same ]] || RPORT=$((20000 + RANDOM % 40000))
    redis-server --port "$RPORT" --bind 127.0.0.1 --save '' --appendonly yes --appendfsync always \
      --dir "$tmp/redis" --daemonize no --logfile "$tmp/redis.log" &
    redis_pid=$!
    for _ in $(seq 50); do
      redis-cli -p "$RPORT" ping 2>/dev/null | grep -q PONG && return 0
      kill -0 $redis_pid 2>/dev/null || break
      sleep 0.1
    done
    kill -KILL $redis_pid 2>/dev/null; wait $redis_pid 2>/dev/null; redis_pid=
    [[ ${1:-} == same ]] && sleep 0.5
  done
  return 1
}
command -v redis-cli >/dev/null || skip "needs redis-cli (Debian's redis-tools, with redis-server)"
start_redis || fail "cannot start redis-server"
BROKER=redis://127.0.0.1:$RPORT

start_serve() { # start_serve LOGNAME [ARGS...] -> sets spid, U
  TMPDIR=$tmp/tmp "$BIN" serve --port 0 --broker "$BROKER" --queue 500 --job-ttl 600 --model-image "$MODEL" \
    --no-synthetic --timeout 30 "${@:2}" 2>"$tmp/$1.log" &
  spid=$!
  pids+=($spid)
  local port=
  for _ in $(seq 300); do
    port=$(sed -n 's|.*listening on http://127.0.0.1:\([0-9]*\)/.*|\1|p' "$tmp/$1.log")
    [[ -n $port ]] && break
    kill -0 $spid 2>/dev/null || break
    sleep 0.1
  done
  [[ -n $port ]] || fail "the server did not start"
  U=http://127.0.0.1:$port
}
declare -A wpid
start_worker() { # start_worker NAME [MAX_ATTEMPTS]
  TMPDIR=$tmp/tmp "$BIN" worker --broker "$BROKER" --name "$1" --model-image "$MODEL" --no-synthetic --frames $FRAMES \
    --threads 1 --visibility-timeout 3 --max-attempts "${2:-3}" --spool "$tmp/spool" 2>"$tmp/worker-$1.log" &
  wpid[$1]=$!
  pids+=(${wpid[$1]})
  for _ in $(seq 300); do grep -q 'ready' "$tmp/worker-$1.log" && return 0; sleep 0.1; done
  fail "worker $1 did not start"
}

start_serve serve1
start_worker wA
start_worker wB
for _ in $(seq 50); do [[ $(req "$U/v1/health") == 200 ]] && break; sleep 0.1; done
[[ $(req "$U/v1/health") == 200 ]] || fail "health with 2 workers: $(body)"
[[ $(jv '"\(.status) \(.workers) \(.queue_depth) \(.retries)"' <"$tmp/body") == "ok 2 0 0" ]] || fail "health: $(body)"

# submit FILE -> the job id (?async=1: images too become jobs to poll)
submit() {
  local code
  code=$(req -F "file=@$1" "$U/v1/analyze?async=1")
  [[ $code == 202 ]] || fail "submit $1: $code $(body)"
  jv .job_id <"$tmp/body"
}
job() { req "$U/v1/jobs/$1" >/dev/null; body; }
# same "VERDICT P" "VERDICT P": the same verdict and P(fake) to 1e-6 (JSON number formats differ)
same() { awk -v a="$1" -v b="$2" 'BEGIN { split(a, x, " "); split(b, y, " "); d = x[2] - y[2]; exit !(x[1] == y[1] && d * d < 1e-12) }'; }

ids=()
declare -A file_of
add() { local id; id=$(submit "$1") || exit 1; ids+=("$id"); file_of[$id]=$1; }

# 1. The long clip first; the worker that takes it is killed with SIGKILL while it runs.
add "$tmp/long.mp4"
K=${ids[0]}
victim=
for _ in $(seq 500); do
  j=$(job "$K")
  if [[ $(echo "$j" | jv .state) == running ]]; then
    victim=$(echo "$j" | jv .worker); break
  fi
  sleep 0.02
done
[[ $victim == wA || $victim == wB ]] || fail "the long job did not run: $(job "$K")"
kill -KILL "${wpid[$victim]}"
echo "killed worker $victim in the middle of job $K" >&2

# 2. Jobs 2..20 on the first server, then the server is killed, and a new one takes 21..40.
pick() { if [[ -n $dfdc ]] && ((n % 20 == 10)); then echo "$dfdc"; else echo "${files[$((n % ${#files[@]}))]}"; fi; }
n=1
while ((n < 20)); do add "$(pick)"; n=$((n + 1)); done
kill -KILL "$spid"
wait "$spid" 2>/dev/null
start_serve serve2
other=wA; [[ $victim == wA ]] && other=wB
start_worker wC # the killed worker's replacement
while ((n < 40)); do add "$(pick)"; n=$((n + 1)); done
((${#ids[@]} == 40)) || fail "${#ids[@]} jobs submitted"

# 3. All 40 end, on the second server, with the reference results.
deadline=$(($(date +%s) + 150))
for id in "${ids[@]}"; do
  while :; do
    j=$(job "$id")
    st=$(echo "$j" | jv .state)
    [[ $st == done || $st == failed || $st == cancelled ]] && break
    (($(date +%s) < deadline)) || fail "job $id (${file_of[$id]}) did not end: $j"
    sleep 0.2
  done
  [[ $st == done ]] || fail "job $id (${file_of[$id]}) ended $st: $j"
  got=$(echo "$j" | jv '.result.results[0] | "\(.verdict) \(.p_fake)"')
  same "$got" "${ref[${file_of[$id]}]}" || fail "job $id (${file_of[$id]}): $got, scan says ${ref[${file_of[$id]}]}"
  a=$(echo "$j" | jv .attempts)
  if [[ $id == "$K" ]]; then
    [[ $a == 2 ]] || fail "the killed job shows $a attempts: $j"
  else
    [[ $a == 1 ]] || fail "job $id shows $a attempts: $j"
  fi
done
# Exactly once: 40 ends stored in all, one retry, no job stored twice, nothing left queued.
curl -s "$U/metrics" >"$tmp/metrics"
grep -q '^dfd_jobs_finished_total{state="done"} 40$' "$tmp/metrics" || fail "finished: $(grep finished "$tmp/metrics")"
grep -q '^dfd_job_retries_total 1$' "$tmp/metrics" || fail "retries: $(grep retries "$tmp/metrics")"
grep -q '^dfd_queue_depth 0$' "$tmp/metrics" || fail "queue: $(grep queue_depth "$tmp/metrics")"
stored=$(cat "$tmp"/worker-*.log | grep -c ' attempt [0-9]* done in ')
[[ $stored == 40 ]] || fail "$stored 'done' lines in the workers' logs, not 40"
grep -q "not stored" "$tmp"/worker-*.log && fail "a worker computed an end that was stored already"
grep -q "job $K attempt 2 done" "$tmp"/worker-*.log || fail "the killed job's second attempt is not in the logs"
[[ $(req "$U/v1/health") == 200 && $(jv .retries <"$tmp/body") == 1 ]] ||
  fail "health after the run: $(body)"
echo "40 jobs: ok ($(($(date +%s) - t_start)) s so far)" >&2

# 4. The waiting routes through the broker answer as without one.
[[ $(req -F "file=@$SRC/examples/astronaut.jpg" "$U/predict_image") == 200 ]] || fail "predict_image: $(body)"
same "$(jv '"\(.prediction) \(1 - .raw_score)"' <"$tmp/body")" "${ref[$SRC/examples/astronaut.jpg]}" ||
  fail "predict_image: $(body); scan says ${ref[$SRC/examples/astronaut.jpg]}"
[[ $(req -F "file=@$SRC/examples/astronaut-clip.mp4" "$U/predict_video") == 200 ]] || fail "predict_video: $(body)"
[[ $(req -F "file=@$SRC/examples/chelsea.png" "$U/v1/analyze") == 200 ]] || fail "v1 image: $(body)"
[[ $(jv '"\(.schema) \(.results[0].file)"' <"$tmp/body") == "dfd.result/1 chelsea.png" ]] || fail "v1 doc: $(body)"
[[ $(req -F "file=@$SRC/examples/astronaut.jpg" "$U/predict_video") == 415 ]] || fail "image on predict_video: $(body)"

# 5. A job cancelled while it runs on a worker ends cancelled. (Should the clip end before
# the cancel reaches the worker, on a starved machine, it is tried again.)
cancelled=0
for try in 1 2 3; do
  C=$(submit "$tmp/slow.mp4")
  for _ in $(seq 500); do [[ $(job "$C" | jv .state) == running ]] && break; sleep 0.02; done
  [[ $(job "$C" | jv .state) == running ]] || fail "the job to cancel did not run: $(job "$C")"
  code=$(req -X DELETE "$U/v1/jobs/$C")
  if [[ $code == 202 ]]; then
    for _ in $(seq 300); do
      st=$(job "$C" | jv .state)
      [[ $st == cancelled || $st == done || $st == failed ]] && break
      sleep 0.1
    done
    if [[ $(job "$C" | jv '"\(.state) \(.error)"') == "cancelled cancelled" ]]; then cancelled=1; break; fi
    [[ $st == done && $(job "$C" | jv .cancel_requested) == true ]] || fail "cancelled job: $(job "$C")"
  else
    [[ $code == 200 && $(jv .deleted <"$tmp/body") == true ]] || fail "DELETE a running job: $code $(body)"
  fi
  echo "note: job $C ended before its cancel reached the worker; again" >&2
done
[[ $cancelled == 1 ]] || fail "three jobs ended before their cancel reached the worker"
# DELETE of an ended job forgets it.
[[ $(req -X DELETE "$U/v1/jobs/$C") == 200 && $(req "$U/v1/jobs/$C") == 404 ]] || fail "forget: $(body)"

# 5b. --spool: the upload goes through a folder the workers share, not through Redis, and
# is removed when the job ends.
spid_main=$spid U_main=$U
start_serve serve3 --spool "$tmp/spool"
S=$(submit "$SRC/examples/chelsea.png")
for _ in $(seq 300); do [[ $(job "$S" | jv .state) == done ]] && break; sleep 0.1; done
same "$(job "$S" | jv '.result.results[0] | "\(.verdict) \(.p_fake)"')" "${ref[$SRC/examples/chelsea.png]}" ||
  fail "spooled job: $(job "$S")"
[[ $(redis-cli -p "$RPORT" hget "dfd:job:$S" upload) == spool ]] || fail "the job did not go through the spool"
[[ -z $(ls -A "$tmp/spool") ]] || fail "the spool folder keeps $(ls -A "$tmp/spool")"
kill -TERM "$spid"; wait "$spid" || fail "the spooling server exited $?"
spid=$spid_main U=$U_main

# 6. Redis stopped: 503 with a clear error (no crash); started again: normal service, jobs kept (AOF).
redis-cli -p "$RPORT" shutdown nosave >/dev/null 2>&1
wait "$redis_pid" 2>/dev/null
redis_pid=
[[ $(req "$U/v1/health") == 503 ]] || fail "health with Redis down: $(body)"
jv .error <"$tmp/body" | grep -q "unreachable" || fail "health error: $(body)"
[[ $(req -F "file=@$SRC/examples/astronaut.jpg" "$U/v1/analyze") == 503 ]] || fail "upload with Redis down: $(body)"
jv .error <"$tmp/body" | grep -q "Redis" || fail "upload error: $(body)"
[[ $(req "$U/v1/jobs/$K") == 503 ]] || fail "job lookup with Redis down: $(body)"
grep -q "unreachable" "$tmp/serve2.log" || fail "no log line says Redis is unreachable"
kill -0 "$spid" || fail "the server died with Redis"
start_redis same || fail "cannot restart redis-server on port $RPORT"
for _ in $(seq 100); do [[ $(req "$U/v1/health") == 200 ]] && break; sleep 0.1; done
[[ $(req "$U/v1/health") == 200 ]] || fail "health after Redis came back: $(body)"
[[ $(req "$U/v1/jobs/$K") == 200 && $(jv .state <"$tmp/body") == done ]] || fail "job after Redis restart: $(body)"
[[ $(req -F "file=@$SRC/examples/astronaut.jpg" "$U/predict_image") == 200 ]] || fail "predict after Redis restart: $(body)"
grep -q "reachable again" "$tmp/serve2.log" || fail "no log line says Redis is back"

# 7. The workers stop cleanly (exit 0: under ASan, also no leak).
for w in wA wB wC; do
  [[ $w == "$victim" ]] && continue
  kill -TERM "${wpid[$w]}"; wait "${wpid[$w]}" || fail "worker $w exited $?"
done

# 8. --max-attempts: with one attempt allowed, a job whose worker dies is failed with the
# reason when another worker finds it, not run again.
start_worker wD 1
M=$(submit "$tmp/slow.mp4")
for _ in $(seq 500); do [[ $(job "$M" | jv .state) == running ]] && break; sleep 0.02; done
[[ $(job "$M" | jv .worker) == wD ]] || fail "the job for wD did not run: $(job "$M")"
kill -KILL "${wpid[wD]}"; wait "${wpid[wD]}" 2>/dev/null
start_worker wE 1
for _ in $(seq 300); do [[ $(job "$M" | jv .state) == failed ]] && break; sleep 0.1; done
[[ $(job "$M" | jv '"\(.state) \(.attempts)"') == "failed 1" ]] || fail "job past its attempts: $(job "$M")"
job "$M" | jv .error | grep -q "gave up after 1 attempts.*last: wD" || fail "the reason: $(job "$M")"
kill -TERM "${wpid[wE]}"; wait "${wpid[wE]}" || fail "worker wE exited $?"

# 8b. A URL with a password and a database: the jobs live in that database; a wrong
# password gives 503 with Redis's refusal, and a log line.
redis-cli -p "$RPORT" config set requirepass s3cret >/dev/null
spid_main=$spid U_main=$U BROKER_MAIN=$BROKER
BROKER="redis://:s3cret@127.0.0.1:$RPORT/2"
start_serve serve4
start_worker wF
P=$(submit "$SRC/examples/chelsea.png")
for _ in $(seq 300); do [[ $(job "$P" | jv .state) == done ]] && break; sleep 0.1; done
[[ $(job "$P" | jv .state) == done ]] || fail "job on database 2 with a password: $(job "$P")"
rc2() { redis-cli -p "$RPORT" -a s3cret --no-auth-warning "$@"; }
[[ $(rc2 -n 2 exists "dfd:job:$P") == 1 && $(rc2 -n 0 exists "dfd:job:$P") == 0 ]] || fail "the job is not in database 2 alone"
kill -TERM "${wpid[wF]}"; wait "${wpid[wF]}" || fail "worker wF exited $?"
kill -TERM "$spid"; wait "$spid" || fail "the database-2 server exited $?"
BROKER="redis://:wrong@127.0.0.1:$RPORT/2"
start_serve serve5
[[ $(req "$U/v1/health") == 503 ]] || fail "health with a wrong password: $(body)"
jv .error <"$tmp/body" | grep -q "refused the credentials" || fail "wrong password error: $(body)"
grep -q "refused the credentials" "$tmp/serve5.log" || fail "no log line says the password was refused"
kill -TERM "$spid"; wait "$spid" || fail "the wrong-password server exited $?"
rc2 config set requirepass "" >/dev/null
spid=$spid_main U=$U_main BROKER=$BROKER_MAIN

# 9. The server stops cleanly.
kill -TERM "$spid"; wait "$spid" || fail "the server exited $?"
redis-cli -p "$RPORT" shutdown nosave >/dev/null 2>&1; wait "$redis_pid" 2>/dev/null; redis_pid=
echo "ok ($(($(date +%s) - t_start)) s)" >&2
