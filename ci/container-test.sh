#!/usr/bin/env bash
# ci/container-test.sh — builds dfd's container image from the project's Dockerfile with
# podman and tests it for real, on a machine with no Docker engine and no image registry:
#   1. installs podman & co. (apt-get) where missing;
#   2. makes the Debian 12 slim base image locally if it is missing (debootstrap from the
#      Debian mirror this machine's apt uses, slimmed like the official image, imported
#      and tagged so the Dockerfile's `FROM debian:12-slim` works unchanged);
#   3. builds the image (prints its size and the build time);
#   4. checks it: size limit, non-root user, HEALTHCHECK, no missing library, the models
#      inside, `dfd --version`; `dfd scan` on examples/ and on clips in eight video codecs
#      made here (the image's FFmpeg is a reduced build); the server container as shipped
#      (without a trained model it must say "degraded" and fail its HEALTHCHECK) and with
#      a model: health, HEALTHCHECK, /predict_image, /predict_video, /v1/analyze, the page
#      at /, the request log, a clean stop on SIGTERM. Until a trained model ships in
#      models/, "with a model" means a tiny one trained by the image's own `dfd train`.
# Checks the binary cannot run yet are reported as SKIPPED with the reason, never silently.
# Whatever happens, the containers it started are stopped and removed.
#
# Exit status: 0 every check that ran passed; 1 a check failed; 3 podman cannot run
# containers on this machine (0 instead, with a SKIPPED line, when DFD_SKIP_CONTAINER=1).
# Environment: DFD_IMAGE (tag, default dfd), DFD_CONTAINER_PORT (host port on 127.0.0.1;
# default: any free one), DFD_DEBIAN_MIRROR (instead of the one apt uses),
# DFD_MAX_IMAGE_MB (default 150), DFD_SKIP_CONTAINER.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
IMAGE=${DFD_IMAGE:-dfd}
BASE=localhost/debian:bookworm-slim
MAX_MB=${DFD_MAX_IMAGE_MB:-150}
LOG_DIR="$ROOT/build/container"   # build/ is git- and docker-ignored; CI keeps it
T_START=$(date +%s)

say() { printf 'container-test: %s\n' "$*" >&2; }
RESULTS=()
FAILED=0
pass() { RESULTS+=("PASS  $*"); say "PASS: $*"; }
fail() { RESULTS+=("FAIL  $*"); say "FAIL: $*"; FAILED=1; }
skip() { RESULTS+=("SKIP  $*"); say "SKIPPED: $*"; }

# Podman cannot work here at all: say so plainly; only DFD_SKIP_CONTAINER=1 excuses it.
cannot_run() {
  say "podman cannot run containers on this machine: $*"
  if [[ "${DFD_SKIP_CONTAINER:-0}" == 1 ]]; then
    say "SKIPPED: the container image was NOT built or tested (DFD_SKIP_CONTAINER=1)"
    exit 0
  fi
  say "the container image was not built or tested; set DFD_SKIP_CONTAINER=1 to accept that"
  exit 3
}

# ---- cleanup, whatever happens -------------------------------------------------------
CONTAINERS=()
TMP_PATHS=()
cleanup() {
  local rc=$?
  local c
  for c in "${CONTAINERS[@]}"; do podman rm -f -t 5 "$c" >/dev/null 2>&1 || true; done
  local p
  for p in "${TMP_PATHS[@]}"; do rm -rf --one-file-system "$p"; done
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ---- 1. root and packages ------------------------------------------------------------
# debootstrap and rootful podman need root; use sudo where it works without a password.
if [[ $(id -u) -ne 0 ]]; then
  if command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
    exec sudo -n --preserve-env=DFD_IMAGE,DFD_CONTAINER_PORT,DFD_DEBIAN_MIRROR,DFD_MAX_IMAGE_MB,DFD_SKIP_CONTAINER "$0" "$@"
  fi
  cannot_run "it needs root (or password-less sudo) for debootstrap and podman"
fi
NEED=(podman buildah runc crun fuse-overlayfs slirp4netns uidmap debootstrap curl jq)
missing=()
if command -v dpkg-query >/dev/null; then
  for p in "${NEED[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
else
  for p in podman debootstrap curl jq; do command -v "$p" >/dev/null || missing+=("$p"); done
fi
if ((${#missing[@]})); then
  command -v apt-get >/dev/null || cannot_run "missing ${missing[*]} and no apt-get to install them"
  say "installing: ${missing[*]}"
  t=$(date +%s)
  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null; } ||
    cannot_run "apt-get could not install ${missing[*]}"
  say "packages installed in $(( $(date +%s) - t )) s"
fi

# ---- host quirks, fixed for this script's podman calls only --------------------------
# crun stops with "cgroups in hybrid mode not supported" on hosts like this one: use runc.
# Podman asks for an open-files limit above the host's hard limit ("setrlimit
# RLIMIT_NOFILE: Operation not permitted"): ask for the host's hard limits instead.
hard_n=$(ulimit -Hn); hard_u=$(ulimit -Hu)
[[ $hard_n == unlimited ]] && hard_n=1048576
if [[ $hard_u == unlimited ]] || ((hard_u > 32768)); then hard_u=32768; fi
CONTAINERS_CONF=$(mktemp /tmp/dfd-containers-XXXXXX.conf)
TMP_PATHS+=("$CONTAINERS_CONF")
cat > "$CONTAINERS_CONF" <<EOF
[containers]
default_ulimits = ["nofile=$hard_n:$hard_n", "nproc=$hard_u:$hard_u"]

[engine]
runtime = "runc"
EOF
export CONTAINERS_CONF
if ! err=$(podman info 2>&1 >/dev/null); then cannot_run "'podman info' fails: $(tail -n3 <<<"$err")"; fi

# ---- 2. the base image, made locally -------------------------------------------------
# apt_uri SUITE: the first URI this machine's apt uses for SUITE (one-line or deb822 files).
apt_uri() {
  local suite=$1 f out=""
  for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
    [[ -f $f ]] || continue
    out+=$(awk -v s="$suite" '$1 == "deb" {
        i = 2
        if ($2 ~ /^\[/) { while (i <= NF && $i !~ /\]$/) i++; i++ }
        if ($(i + 1) == s) { print $i; exit } }' "$f")$'\n'
  done
  for f in /etc/apt/sources.list.d/*.sources; do
    [[ -f $f ]] || continue
    out+=$(awk -v s="$suite" '
      function flush() {
        if (!off && (" " types " ") ~ / deb / && (" " suites " ") ~ (" " s " ")) {
          split(uris, u, " "); print u[1]; found = 1; exit }
        types = ""; suites = ""; uris = ""; off = 0 }
      /^[ \t]*#/ { next }
      /^[ \t]*$/ { flush(); next }
      { key = tolower($1); $1 = "" }
      key == "types:" { types = $0 }
      key == "uris:" { uris = $0 }
      key == "suites:" { suites = $0 }
      key == "enabled:" && tolower($0) ~ /no/ { off = 1 }
      END { if (!found) flush() }' "$f")$'\n'
  done
  out=$(grep -m1 . <<<"$out" || true)
  printf '%s\n' "${out%/}"
}

make_base_image() {
  local mirror security dir t
  mirror=${DFD_DEBIAN_MIRROR:-$(apt_uri bookworm)}
  mirror=${mirror:-http://deb.debian.org/debian}
  security=$(apt_uri bookworm-security)
  security=${security:-http://deb.debian.org/debian-security}
  say "making the base image $BASE: debootstrap --variant=minbase bookworm from $mirror"
  t=$(date +%s)
  dir=$(mktemp -d /var/tmp/dfd-rootfs-XXXXXX)
  TMP_PATHS+=("$dir")
  if ! debootstrap --variant=minbase bookworm "$dir" "$mirror" > "$LOG_DIR/debootstrap.log" 2>&1; then
    tail -n 20 "$LOG_DIR/debootstrap.log" >&2
    fail "debootstrap of the base image (log: $LOG_DIR/debootstrap.log)"
    exit 1
  fi
  # Slim it as the official debian:*-slim image is: dpkg leaves out docs (but copyright),
  # man/info pages and locales from now on, and what is already there goes.
  mkdir -p "$dir/etc/dpkg/dpkg.cfg.d" "$dir/etc/apt/apt.conf.d"
  cat > "$dir/etc/dpkg/dpkg.cfg.d/docker-slim" <<'EOF'
# Container image: no documentation, manuals or translations (copyright notices stay).
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/groff/*
path-exclude /usr/share/info/*
path-exclude /usr/share/lintian/*
path-exclude /usr/share/linda/*
path-exclude /usr/share/locale/*
EOF
  echo 'force-unsafe-io' > "$dir/etc/dpkg/dpkg.cfg.d/docker-apt-speedup"
  cat > "$dir/etc/apt/apt.conf.d/docker-slim" <<'EOF'
// Container image: keep no package caches or translations; apt lists stay compressed;
// autoremove removes what only a Suggests kept.
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
Dir::Cache::pkgcache "";
Dir::Cache::srcpkgcache "";
Acquire::Languages "none";
Acquire::GzipIndexes "true";
Apt::AutoRemove::SuggestsImportant "false";
EOF
  # Keep the host's fetching settings (proxy, snapshot mirrors' date checks), if any.
  apt-config dump 2>/dev/null |
    grep -E '^Acquire::(https?::Proxy|Check-Valid-Until|Check-Date) ' > "$dir/etc/apt/apt.conf.d/90host-acquire" || true
  [[ -s "$dir/etc/apt/apt.conf.d/90host-acquire" ]] || rm -f "$dir/etc/apt/apt.conf.d/90host-acquire"
  # Services never start inside an image build.
  printf '#!/bin/sh\nexit 101\n' > "$dir/usr/sbin/policy-rc.d"; chmod 755 "$dir/usr/sbin/policy-rc.d"
  # The same Debian sources as this machine, in the official image's deb822 form.
  rm -f "$dir/etc/apt/sources.list"
  cat > "$dir/etc/apt/sources.list.d/debian.sources" <<EOF
Types: deb
URIs: $mirror
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: $security
Suites: bookworm-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
  find "$dir/usr/share/doc" -mindepth 1 -not -name copyright -not -type d -delete
  find "$dir/usr/share/doc" -mindepth 1 -type d -empty -delete
  rm -rf "${dir:?}"/usr/share/{man,groff,info,lintian,linda,locale}/*
  rm -rf "${dir:?}"/var/lib/apt/lists/* "${dir:?}"/var/cache/apt/* "${dir:?}"/var/cache/debconf/*-old \
         "${dir:?}"/var/lib/dpkg/*-old "${dir:?}"/var/log/*.log "${dir:?}"/var/log/apt/* "${dir:?}"/tmp/* "${dir:?}"/dev/* \
         "${dir:?}"/etc/resolv.conf "${dir:?}"/etc/hostname "${dir:?}"/root/.bash_history
  mkdir -p "$dir/var/lib/apt/lists/partial" "$dir/var/cache/apt/archives/partial"
  tar --numeric-owner -C "$dir" -c . |
    podman import --change 'CMD ["bash"]' \
      --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' - "$BASE" >/dev/null
  rm -rf --one-file-system "$dir"
  say "base image made in $(( $(date +%s) - t )) s"
}

mkdir -p "$LOG_DIR"
if podman image exists "$BASE"; then
  say "base image $BASE already present"
else
  make_base_image   # not under || : set -e must stay in force inside
fi
podman tag "$BASE" localhost/debian:12-slim docker.io/library/debian:12-slim
base_mb=$(( $(podman image inspect --format '{{.Size}}' "$BASE") / 1000000 ))
say "base image: $BASE = debian:12-slim, $base_mb MB"
# Can podman start a container here at all?
if ! err=$(podman run --rm --pull=never "$BASE" true 2>&1); then
  cannot_run "a trivial 'podman run $BASE true' fails: $(tail -n3 <<<"$err")"
fi

# ---- 3. build dfd's image -------------------------------------------------------------
say "building $IMAGE from Dockerfile (log: $LOG_DIR/build.log)"
t=$(date +%s)
# This machine's trusted CAs go to the build as a secret (not into any layer): on networks
# behind a TLS-intercepting proxy, setup.sh's npm fetch inside the build needs them.
build_args=()
for ca in "${NODE_EXTRA_CA_CERTS:-}" "$(npm config get cafile 2>/dev/null || true)" /etc/ssl/certs/ca-certificates.crt; do
  if [[ -n $ca && $ca != null && $ca != undefined && -s $ca ]]; then
    build_args+=(--secret "id=host_ca,src=$ca"); break
  fi
done
# --jobs 2: the ffmpeg stage compiles while the build stage installs its packages.
if ! podman build --pull=never --format docker --jobs 2 "${build_args[@]}" -t "$IMAGE" -f Dockerfile . > "$LOG_DIR/build.log" 2>&1; then
  tail -n 40 "$LOG_DIR/build.log" >&2
  fail "podman build (log: $LOG_DIR/build.log)"
  exit 1
fi
BUILD_S=$(( $(date +%s) - t ))
grep -m1 'runtime packages:' "$LOG_DIR/build.log" >&2 || true
size_b=$(podman image inspect --format '{{.Size}}' "$IMAGE")
SIZE_MB=$(( size_b / 1000000 ))
say "image $IMAGE: $SIZE_MB MB (base $base_mb MB), built in $BUILD_S s"

# ---- 4. checks ---------------------------------------------------------------------------
# in_image [PODMAN-RUN-OPTIONS --] CMD...: run a command in a throw-away container of the
# image (no HEALTHCHECK timer: podman would ask systemd for one, which CI hosts may lack).
in_image() {
  local opts=()
  if [[ " $* " == *" -- "* ]]; then while [[ $1 != -- ]]; do opts+=("$1"); shift; done; shift; fi
  podman run --rm --pull=never --no-healthcheck "${opts[@]}" "$IMAGE" "$@"
}

if ((SIZE_MB <= MAX_MB)); then pass "image size $SIZE_MB MB <= $MAX_MB MB"
else
  fail "image size $SIZE_MB MB > $MAX_MB MB"
  # Where the weight is: the layers, and the largest libraries the binary loads.
  podman history --format '{{.Size}}\t{{.CreatedBy}}' "$IMAGE" | grep -v '^0 B' | cut -c1-100 | sed 's/^/    /' >&2
  # shellcheck disable=SC2016 # expanded by the shell inside the container
  in_image sh -c 'ldd /usr/local/bin/dfd | awk "\$3 ~ /^\// {print \$3}" | xargs readlink -f | xargs du -k' 2>/dev/null |
    sort -rn | head -n 8 | awk '{printf "    %6.1f MB  %s\n", $1 / 1024, $2}' >&2 || true
fi

user=$(podman image inspect --format '{{.Config.User}}' "$IMAGE")
uid=$(in_image id -u 2>&1 || true)
if [[ -n $user && $uid =~ ^[0-9]+$ && $uid -ne 0 ]]; then pass "runs as non-root (USER $user, uid $uid)"
else fail "non-root user (USER '$user', id -u: '$uid')"; fi

hc=$(podman image inspect --format '{{json .Config.Healthcheck}}' "$IMAGE")
if [[ $hc == *"/v1/health"* ]]; then pass "HEALTHCHECK on /v1/health in the image"
else fail "HEALTHCHECK on /v1/health in the image (found: $hc)"; fi

if out=$(in_image sh -c 'ldd /usr/local/bin/dfd' 2>&1) && ! grep -q 'not found' <<<"$out"; then
  pass "every shared library dfd needs is in the image"
else fail "shared libraries in the image: $(grep 'not found' <<<"$out" | tr -s ' \t\n' ' ')"; fi

if out=$(in_image dfd --version 2>&1) && [[ $out =~ ^dfd\ [0-9] ]]; then pass "dfd --version inside: $out"
else fail "dfd --version inside: $out"; fi

# The models: every committed file under models/ (of each family of shipped models,
# dfd-image-* and dfd-synthetic-*, the newest only: the Dockerfile leaves older ones out),
# and what setup.sh converted.
committed=$(git ls-files models 2>/dev/null | sed 's|^models/||' | sort)
for fam in dfd-image dfd-synthetic; do
  older=$(grep -E "^$fam-.*\.safetensors\$" <<<"$committed" | sort -V | head -n -1 || true)
  if [[ -n $older ]]; then committed=$(comm -23 <(printf '%s\n' "$committed") <(printf '%s\n' "$older")); fi
done
inside=$(in_image sh -c 'cd /app/models && find . -type f | sed "s|^\./||" | sort' 2>&1 || true)
if [[ -n $committed ]]; then
  lost=$(comm -23 <(printf '%s\n' "$committed") <(printf '%s\n' "$inside"))
  if [[ -z $lost ]]; then pass "all $(wc -l <<<"$committed") committed model files are in /app/models"
  else fail "committed model files missing from /app/models: $(tr '\n' ' ' <<<"$lost")"; fi
fi
# (but for the ImageNet backbones and the face-landmark model, for training only: the
# Dockerfile leaves them out).
if [[ -d models/registry ]]; then
  lost=$(comm -23 <(cd models && find registry -type f -not -name '*-imagenet.safetensors' -not -name 'face-landmark.safetensors' | sort) \
                  <(printf '%s\n' "$inside"))
  if [[ -z $lost ]]; then pass "the converted registry models are in /app/models/registry: $(grep '^registry/' <<<"$inside" | tr '\n' ' ')"
  else fail "converted models missing from /app/models: $(tr '\n' ' ' <<<"$lost")"; fi
fi

help=$(in_image dfd --help 2>&1 || true)
has_cmd() { grep -qE "^  $1 " <<<"$help"; }

# The other role: /app/start.sh worker ... runs `dfd worker` (docs/scale-out.md).
if ! has_cmd worker; then skip "the worker role: this build's dfd has no 'worker' command"
elif out=$(in_image /app/start.sh worker --help 2>&1) && [[ $out == *"Usage: dfd worker"* ]]; then
  pass "/app/start.sh worker runs dfd worker"
else fail "/app/start.sh worker --help: $(head -n 3 <<<"$out")"; fi

WORK=$(mktemp -d /tmp/dfd-container-test-XXXXXX)
TMP_PATHS+=("$WORK")
chmod 0777 "$WORK"   # the image's non-root user writes here

# The image model: the shipped one (models/dfd-image-*.safetensors) when there is one;
# otherwise a tiny one trained here by the image's own `dfd train` on the examples: it
# proves the plumbing (train, scan, serve inside the image), not accuracy.
MODEL_MOUNT=()
SHIPPED_MODEL=$(grep -m1 -E '^dfd-image-.*\.safetensors$' <<<"$inside" || true)
if [[ -n $SHIPPED_MODEL ]]; then
  say "the image ships the model $SHIPPED_MODEL"
elif has_cmd train; then
  skip "no trained model ships in models/ yet (no dfd-image-*.safetensors): the checks below use a tiny model trained in the image, whose verdicts mean nothing"
  mkdir -p "$WORK/data/real" "$WORK/data/fake"
  for i in 0 1 2 3 4 5; do
    cp examples/astronaut.png "$WORK/data/real/a$i.png"; cp examples/chelsea.png "$WORK/data/fake/c$i.png"
  done
  chmod -R a+rwX "$WORK/data"
  if out=$(in_image -v "$WORK:/w" -- dfd train image --arch tiny-cnn --input-size 32 --data /w/data --out /w/model \
             --epochs 1 --batch 4 --threads 1 --backend ref --val-fraction 0.34 --patience 0 --no-augment 2>&1) &&
     [[ -f $WORK/model/best.safetensors ]]; then
    pass "dfd train inside the image (a tiny model for the checks below)"
    MODEL_MOUNT=(-v "$WORK/model/best.safetensors:/app/models/dfd-image-0-ci.safetensors:ro")
  else
    fail "dfd train inside the image: $(tail -n 5 <<<"$out")"
  fi
else
  skip "no model in the image and no 'dfd train' to make one: the analysis checks cannot run"
fi
have_model() { [[ -n $SHIPPED_MODEL || ${#MODEL_MOUNT[@]} -gt 0 ]]; }

# dfd scan examples/ inside (examples are in the image at /app/examples, WORKDIR /app).
if ! has_cmd scan; then
  skip "dfd scan: this build's dfd has no 'scan' command yet"
elif ! have_model; then
  skip "dfd scan: no image model"
else
  if out=$(in_image "${MODEL_MOUNT[@]}" -- dfd scan -q examples/ 2>&1); then pass "dfd scan examples/ inside (exit 0)"
  else fail "dfd scan examples/ inside: $(tail -n5 <<<"$out")"; fi
  printf '%s\n' "$out" | sed 's/^/    /' >&2
  json=$(in_image "${MODEL_MOUNT[@]}" -- dfd scan -q --json examples/astronaut.jpg examples/chelsea.png \
           examples/astronaut-clip.mp4 2>/dev/null || true)
  if jq -e '.schema == "dfd.result/1"
        and (.results | map(select(.file | endswith("astronaut.jpg")))[0]
             | (.verdict == "REAL" or .verdict == "FAKE") and (.faces | length) == 1)
        and (.results | map(select(.file | endswith("chelsea.png")))[0] | .verdict == "NO_FACE")
        and (.results | map(select(.file | endswith("astronaut-clip.mp4")))[0]
             | .media == "video" and (.verdict == "REAL" or .verdict == "FAKE") and (.frames | length) > 0)' \
        <<<"$json" >/dev/null 2>&1
  then pass "dfd scan --json inside: one face and a verdict for the portrait and the clip, NO_FACE for the cat"
  else fail "dfd scan --json inside answered: $(head -c 800 <<<"$json")"; fi

  # The image's FFmpeg decodes the video codecs it is meant to: clips made here with
  # this machine's ffmpeg (when it has one), one face expected in each.
  if command -v ffmpeg >/dev/null; then
    mkdir -p "$WORK/clips"
    made=()
    for spec in "h264.mp4:-c:v libx264" "hevc.mp4:-c:v libx265 -tag:v hvc1" "vp9.webm:-c:v libvpx-vp9 -b:v 200k" \
                "vp8.webm:-c:v libvpx -b:v 200k" "av1.mkv:-c:v libaom-av1 -cpu-used 8 -b:v 200k" \
                "mpeg4.avi:-c:v mpeg4 -q:v 4" "mjpeg.avi:-c:v mjpeg -q:v 4" "mpeg2.ts:-c:v mpeg2video -q:v 4"; do
      f=${spec%%:*}
      # shellcheck disable=SC2086 # the codec options are words on purpose
      if ffmpeg -hide_banner -loglevel error -y -loop 1 -i examples/astronaut.png -t 1 -r 5 \
           -vf scale=256:256,format=yuv420p ${spec#*:} "$WORK/clips/$f" </dev/null 2>/dev/null; then made+=("$f")
      else say "this machine's ffmpeg cannot make $f: not checked"; fi
    done
    chmod -R a+rX "$WORK/clips"
    json=""
    ((${#made[@]})) && json=$(in_image -v "$WORK/clips:/clips:ro" "${MODEL_MOUNT[@]}" -- \
             dfd scan -q --json --frames 3 "${made[@]/#//clips/}" 2>/dev/null || true)
    bad=$(jq -r '.results[] | select(.media != "video" or (.faces | length) != 1) | "\(.file): \(.verdict) \(.error)"' \
            <<<"$json" 2>&1 || echo "no JSON: $(head -c 300 <<<"$json")")
    [[ -n $json || ${#made[@]} -eq 0 ]] || bad="dfd scan printed no JSON"
    n=$(jq '.results | length' <<<"$json" 2>/dev/null || echo 0)
    if ((${#made[@]} == 0)); then skip "video codecs in the image: this machine's ffmpeg made no test clip"
    elif [[ -z $bad && $n == "${#made[@]}" ]]; then pass "the image decodes video: ${made[*]} (one face found in each)"
    else fail "video decoding in the image: $bad"; fi
  else
    skip "video codecs in the image: this machine has no ffmpeg to make test clips"
  fi
fi

# req CURL-ARGS...: the HTTP status in $code, the body in $body; both are printed.
req() {
  local tmp; tmp=$(mktemp -p "$WORK")
  code=$(curl -sS -m 180 -o "$tmp" -w '%{http_code}' "$@" 2>&1) || code="curl failed: $code"
  body=$(cat "$tmp")
  say "  curl $* -> $code $(head -c 400 <<<"$body")"
}

# start_server NAME [PODMAN-RUN-OPTIONS...]: the image as `docker run -d -p` starts it,
# with its port on loopback; sets $url; 0 once /v1/health answers at all (any status).
start_server() {
  local name=$1; shift
  CONTAINERS+=("$name")
  # The HEALTHCHECK is run by hand below (podman healthcheck run): no systemd timer.
  # (podman still complains on stderr that it has no systemd for a timer: shown on failure only.)
  if ! podman run -d --pull=never --name "$name" --health-interval disable "$@" \
         -p "127.0.0.1:${DFD_CONTAINER_PORT:-}:8000" "$IMAGE" >/dev/null 2>"$WORK/run.err"; then
    fail "podman run -d $IMAGE: $(cat "$WORK/run.err")"; return 1
  fi
  url="http://$(podman port "$name" 8000/tcp | head -n1)"
  say "server container $name at $url"
  for _ in $(seq 1 120); do
    curl -sS -m 2 -o /dev/null "$url/v1/health" 2>/dev/null && return 0
    [[ $(podman inspect --format '{{.State.Running}}' "$name") == true ]] || break
    sleep 0.5
  done
  fail "the server in $name never answered $url/v1/health; its log:"
  podman logs "$name" 2>&1 | tail -n 30 >&2
  return 1
}

# stop_server NAME: SIGTERM (start.sh execs dfd, so dfd gets it) must end it cleanly.
stop_server() {
  local name=$1 ec
  podman stop -t 20 "$name" >/dev/null 2>&1 || true
  ec=$(podman inspect --format '{{.State.ExitCode}}' "$name" 2>/dev/null || echo '?')
  podman logs "$name" > "$LOG_DIR/$name.log" 2>&1 || true
  if [[ $ec == 0 ]]; then pass "$name stops cleanly on SIGTERM (exit 0)"
  else fail "$name exit status after SIGTERM: $ec (log: $LOG_DIR/$name.log)"; fi
}

if ! has_cmd serve; then
  skip "server checks (health, HEALTHCHECK, /predict_image, /v1/analyze, page at /, clean stop): this build's dfd has no 'serve' command yet"
else
  # a) The image exactly as shipped. Without a model the server still serves the page and
  #    says so: /v1/health 503 "degraded", analyses 503, and the HEALTHCHECK fails.
  if [[ -z $SHIPPED_MODEL ]] && start_server "dfd-ci-bare-$$"; then
    req "$url/v1/health"
    if [[ $code == 503 ]] && jq -e '.status == "degraded"' <<<"$body" >/dev/null 2>&1
    then pass "as shipped (no model): /v1/health 503 degraded"
    else fail "as shipped (no model): /v1/health answered $code $body"; fi
    if out=$(podman healthcheck run "dfd-ci-bare-$$" 2>&1); then fail "HEALTHCHECK passes on a degraded server: $out"
    else pass "as shipped (no model): the image's HEALTHCHECK reports it unhealthy ($out)"; fi
    req -F file=@examples/astronaut.jpg "$url/predict_image"
    if [[ $code == 503 ]] && jq -e '.prediction == null and (.error | startswith("model not loaded"))' <<<"$body" >/dev/null 2>&1
    then pass "as shipped (no model): POST /predict_image 503 model not loaded"
    else fail "as shipped (no model): POST /predict_image answered $code $body"; fi
    stop_server "dfd-ci-bare-$$"
  fi

  # b) With a model: what `docker run -p 8000:8000 dfd` is for.
  name="dfd-ci-$$"
  if ! have_model; then
    skip "server analysis checks: no image model"
  elif start_server "$name" "${MODEL_MOUNT[@]}"; then
    req "$url/v1/health"
    if [[ $code == 200 ]] && jq -e '.status == "ok"' <<<"$body" >/dev/null 2>&1; then pass "GET /v1/health: 200 ok"
    else fail "GET /v1/health: $code $body"; fi
    if out=$(podman healthcheck run "$name" 2>&1); then pass "the image's HEALTHCHECK passes (${out:-healthy})"
    else fail "the image's HEALTHCHECK: $out"; fi

    req -F file=@examples/astronaut.jpg "$url/predict_image"
    old_body=$body
    if [[ $code == 200 ]] && jq -e '(.prediction == "REAL" or .prediction == "FAKE")
          and (.confidence | type == "number" and . >= 50 and . <= 100)
          and (.raw_score | type == "number" and . >= 0 and . <= 1) and .error == null' <<<"$body" >/dev/null 2>&1
    then pass "POST /predict_image (portrait): the original API's fields"
    else fail "POST /predict_image (portrait): $code $body"; fi

    req -F file=@examples/chelsea.png "$url/predict_image"
    if [[ $code == 422 ]] && jq -e '.prediction == null and .error == "no face found"' <<<"$body" >/dev/null 2>&1
    then pass "POST /predict_image (cat): 422 no face found"
    else fail "POST /predict_image (cat): want 422 {prediction:null,error:\"no face found\"}, got $code $body"; fi

    req -F file=@examples/astronaut.jpg "$url/v1/analyze"
    if [[ $code == 200 ]] && jq -e '.schema == "dfd.result/1" and (.results[0]
          | .media == "image" and (.verdict == "REAL" or .verdict == "FAKE") and (.faces | length) == 1
            and (.p_fake | type == "number"))' <<<"$body" >/dev/null 2>&1
    then
      pass "POST /v1/analyze (portrait): dfd.result/1 with one face and a verdict"
      # The two APIs must agree: raw_score is P(real) = 1 - p_fake; the same verdict.
      if jq -e -n --argjson a "$old_body" --argjson b "$body" '($b.results[0]) as $r
            | (($a.raw_score - (1 - $r.p_fake)) | fabs) < 0.001 and $a.prediction == $r.verdict' >/dev/null 2>&1
      then pass "/predict_image and /v1/analyze agree (raw_score = 1 - p_fake, same verdict)"
      else fail "/predict_image ($old_body) and /v1/analyze ($body) disagree"; fi
    else fail "POST /v1/analyze (portrait): $code $body"; fi

    req -F file=@examples/astronaut-clip.mp4 "$url/predict_video"
    if [[ $code == 200 ]] && jq -e '(.prediction == "REAL" or .prediction == "FAKE") and .error == null' <<<"$body" >/dev/null 2>&1
    then pass "POST /predict_video (clip): a verdict"
    else fail "POST /predict_video (clip): $code $body"; fi

    req -H 'Accept: text/html,*/*' "$url/"
    if [[ $code == 200 ]] && grep -qi '<title>Deepfake Detector</title>' <<<"$body"; then pass "GET / (browser): the web page"
    else fail "GET / (browser): $code $(head -c 200 <<<"$body")"; fi
    req "$url/"
    if [[ $code == 200 ]] && jq -e '.status | type == "string"' <<<"$body" >/dev/null 2>&1; then pass "GET / (API client): the status JSON"
    else fail "GET / (API client): $code $(head -c 200 <<<"$body")"; fi

    stop_server "$name"
    if grep -q 'POST /predict_image 200' "$LOG_DIR/$name.log"; then pass "the server logs one line per request"
    else fail "no request lines in the server log: $(tail -n 5 "$LOG_DIR/$name.log")"; fi
  fi
fi

# ---- summary ------------------------------------------------------------------------------
echo "== container test summary"
printf '  %s\n' "${RESULTS[@]}"
echo "  image $IMAGE: $SIZE_MB MB (limit $MAX_MB MB); build $BUILD_S s; whole script $(( $(date +%s) - T_START )) s"
if ((FAILED)); then echo "== container test FAILED"; exit 1; fi
echo "== container test passed (SKIP lines above were not checked)"
