#!/usr/bin/env bash
# bench/broker.sh — what the Redis broker (dfd serve --broker + dfd worker) costs and gives,
# on this machine, with the shipped models (docs/scale-out.md has the figures):
#  1. overhead per job: N small images, one after another, through POST /v1/analyze
#     (the request waits for its result), (a) to `dfd serve --workers 1 --threads 1`,
#     (b) to `dfd serve --broker` + one `dfd worker --threads 1`; the difference of the
#     mean latencies is what the broker adds per job (Redis round trips, the upload's bytes
#     into Redis and out, the worker's temp file, the end notification);
#  2. throughput: M short clips submitted at once to `dfd serve --broker`, taken by 1, 2
#     and 4 single-thread workers; jobs per minute from the first submit to the last end.
#     Also the processor time per job of the processes involved (serve; serve + worker +
#     redis), which other work on the machine disturbs less than wall time.
# Usage: [ONLY_OVERHEAD=1] bench/broker.sh [BUILD_DIR] [N_IMAGES] [M_CLIPS] [CLIP]
# Starts its own redis-server on a free loopback port; everything it starts is stopped.
set -uo pipefail
cd "$(dirname "$0")/.."
BUILD=${1:-build}
N=${2:-100}
M=${3:-24}
CLIP=${4:-examples/astronaut-clip.mp4}
BIN=$BUILD/dfd
tmp=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill -KILL "$p" 2>/dev/null; done; wait 2>/dev/null; rm -rf "$tmp"; }
trap cleanup EXIT
die() { echo "bench/broker.sh: $*" >&2; exit 1; }
command -v redis-server >/dev/null || die "needs redis-server"
[[ -x $BIN ]] || die "no $BIN (build first)"
now() { date +%s.%N; }

RPORT=$((20000 + RANDOM % 40000))
redis-server --port $RPORT --bind 127.0.0.1 --save '' --appendonly yes --dir "$tmp" --logfile "$tmp/redis.log" &
pids+=($!)
RPID=$!
for _ in $(seq 50); do redis-cli -p $RPORT ping 2>/dev/null | grep -q PONG && break; sleep 0.1; done
BROKER=redis://127.0.0.1:$RPORT

serve() { # serve LOG ARGS... -> U
  local log=$1; shift
  "$BIN" serve --port 0 -q --queue 1000 "$@" 2>"$tmp/$log.log" &
  pids+=($!)
  SPID=$!
  for _ in $(seq 600); do
    port=$(sed -n 's|.*listening on http://127.0.0.1:\([0-9]*\)/.*|\1|p' "$tmp/$log.log")
    [[ -n $port ]] && break
    kill -0 $SPID 2>/dev/null || break
    sleep 0.1
  done
  [[ -n $port ]] || die "serve did not start: $(tail -n 3 "$tmp/$log.log")"
  U=http://127.0.0.1:$port
}
worker() { # worker NAME
  "$BIN" worker --broker "$BROKER" --threads 1 -q --name "$1" 2>"$tmp/w-$1.log" &
  pids+=($!)
  WPIDS+=($!)
  for _ in $(seq 600); do grep -q ready "$tmp/w-$1.log" && return; sleep 0.1; done
  die "worker did not start"
}
stop_all_workers() { for p in "${WPIDS[@]}"; do kill -TERM "$p"; wait "$p" 2>/dev/null; done; WPIDS=(); }

# A small image with no face to find: the analysis itself is a millisecond or two.
IMG=$tmp/small.png
ffmpeg -loglevel error -y -f lavfi -i color=c=gray:s=64x64 -frames:v 1 "$IMG" || die "ffmpeg"

# cpu_ms PID...: processor time (user + system) the processes used so far, in ms. Less
# disturbed than wall time by other work on the machine: it counts only what they ran.
cpu_ms() {
  local t=0 p
  for p in "$@"; do t=$((t + $(awk '{print $14 + $15}' "/proc/$p/stat"))); done
  echo $((t * 1000 / $(getconf CLK_TCK)))
}

mean_latency() { # U N -> mean ms of N sequential synchronous analyses (after 5 warm-up)
  for _ in 1 2 3 4 5; do curl -s -o /dev/null -F "file=@$IMG" "$1/v1/analyze"; done
  local t0 t1
  t0=$(now)
  for _ in $(seq "$2"); do
    code=$(curl -s -o /dev/null -w '%{http_code}' -F "file=@$IMG" "$1/v1/analyze")
    [[ $code == 200 ]] || die "analyze answered $code"
  done
  t1=$(now)
  echo "($t1 - $t0) * 1000 / $2" | bc -l
}

echo "== 1. overhead per job ($N sequential small images, waiting for each)"
serve inproc --workers 1 --threads 1
for _ in 1 2 3 4 5; do curl -s -o /dev/null -F "file=@$IMG" "$U/v1/analyze"; done
c0=$(cpu_ms $SPID)
a=$(mean_latency "$U" "$N")
c1=$(cpu_ms $SPID)
kill -TERM $SPID; wait $SPID 2>/dev/null
WPIDS=()
serve brokered --broker "$BROKER"
worker w0
for _ in 1 2 3 4 5; do curl -s -o /dev/null -F "file=@$IMG" "$U/v1/analyze"; done
d0=$(cpu_ms $SPID "${WPIDS[@]}" $RPID)
b=$(mean_latency "$U" "$N")
d1=$(cpu_ms $SPID "${WPIDS[@]}" $RPID)
printf 'wall: in-process queue %.2f ms/job, broker %.2f ms/job: broker overhead %.2f ms/job\n' "$a" "$b" "$(echo "$b - $a" | bc -l)"
ca=$(echo "($c1 - $c0) / ($N + 5)" | bc -l)
cb=$(echo "($d1 - $d0) / ($N + 5)" | bc -l)
printf 'CPU: in-process (serve) %.2f ms/job, broker (serve + worker + redis) %.2f ms/job: broker overhead %.2f ms/job\n' \
  "$ca" "$cb" "$(echo "$cb - $ca" | bc -l)"
stop_all_workers
[[ ${ONLY_OVERHEAD:-0} == 1 ]] && exit 0

echo "== 2. throughput: $M clips ($CLIP) at once, single-thread workers"
base=
for k in 1 2 4; do
  for i in $(seq "$k"); do worker "t$k-$i"; done
  ids=()
  t0=$(now)
  for _ in $(seq "$M"); do
    ids+=("$(curl -s -F "file=@$CLIP" "$U/v1/analyze" | sed -n 's/.*"job_id":"\([0-9a-f]*\)".*/\1/p')")
  done
  for id in "${ids[@]}"; do
    while :; do
      st=$(curl -s "$U/v1/jobs/$id" | sed -n 's/.*"state":"\([a-z]*\)".*/\1/p')
      [[ $st == done ]] && break
      [[ $st == failed || $st == cancelled || -z $st ]] && die "job $id: $st"
      sleep 0.05
    done
  done
  t1=$(now)
  jpm=$(echo "$M * 60 / ($t1 - $t0)" | bc -l)
  [[ -z $base ]] && base=$jpm
  printf '%d worker(s): %.1f jobs/min (%.2f x one worker), %.2f s for %d clips\n' "$k" "$jpm" \
    "$(echo "$jpm / $base" | bc -l)" "$(echo "$t1 - $t0" | bc -l)" "$M"
  stop_all_workers
done
echo "machine: $(nproc) cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')), load $(cut -d' ' -f1-3 /proc/loadavg)"
