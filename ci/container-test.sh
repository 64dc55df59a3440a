#!/usr/bin/env bash
# ci/container-test.sh — builds dfd's container image from the project's Dockerfile with
# podman and tests it for real, on a machine with no Docker engine and no image registry:
#   1. installs podman & co. (apt-get) where missing;
#   2. makes the Debian 12 slim base image locally if it is missing (debootstrap from the
#      Debian mirror this machine's apt uses, slimmed like the official image, imported
#      and tagged so the Dockerfile's `FROM debian:12-slim` works unchanged);
#   3. builds the image (prints its size and the build time);
#   4. checks it: size limit, non-root user, no missing library, models inside,
#      `dfd --version`, `dfd scan` on examples/ (when the binary has `scan`), and, when it
#      has `serve`, the server container: health, /predict_image, /v1/analyze, the page at
#      /, the HEALTHCHECK, and a clean stop on SIGTERM.
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
if ! podman build --pull=never --format docker "${build_args[@]}" -t "$IMAGE" -f Dockerfile . > "$LOG_DIR/build.log" 2>&1; then
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
# in_image CMD...: run a command in a throw-away container of the image.
in_image() { podman run --rm --pull=never "$IMAGE" "$@"; }

if ((SIZE_MB <= MAX_MB)); then pass "image size $SIZE_MB MB <= $MAX_MB MB"
else fail "image size $SIZE_MB MB > $MAX_MB MB"; fi

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

# The models: every committed file under models/ and, once setup.sh converts registry
# weights, a non-empty models/registry/.
committed=$(git ls-files models 2>/dev/null | sed 's|^models/||' | sort)
inside=$(in_image sh -c 'cd /app/models && find . -type f | sed "s|^\./||" | sort' 2>&1 || true)
if [[ -n $committed ]]; then
  lost=$(comm -23 <(printf '%s\n' "$committed") <(printf '%s\n' "$inside"))
  if [[ -z $lost ]]; then pass "all $(wc -l <<<"$committed") committed model files are in /app/models"
  else fail "committed model files missing from /app/models: $(tr '\n' ' ' <<<"$lost")"; fi
else
  skip "no committed models under models/ yet: nothing to look for in /app/models"
fi
if [[ -x scripts/convert-registry-models.sh ]]; then
  if grep -q '^registry/' <<<"$inside"; then pass "converted registry models are in /app/models/registry"
  else fail "setup.sh converts registry models, but /app/models/registry is empty in the image"; fi
else
  skip "models/registry: setup.sh does not convert registry weights yet (no scripts/convert-registry-models.sh)"
fi

help=$(in_image dfd --help 2>&1 || true)
has_cmd() { grep -qE "^  $1 " <<<"$help"; }

# dfd scan examples/ inside: examples are in the image at /app/examples (WORKDIR /app).
if has_cmd scan; then
  if out=$(in_image dfd scan examples/ 2>&1); then pass "dfd scan examples/ inside (exit 0)"
  else fail "dfd scan examples/ inside: $(tail -n5 <<<"$out")"; fi
  printf '%s\n' "$out" | head -n 20 >&2
  json=$(in_image dfd scan --json examples/astronaut.jpg examples/chelsea.png examples/astronaut-clip.mp4 2>/dev/null || true)
  if jq -e '.schema == "dfd.result/1"
        and (.results | map(select(.file | endswith("astronaut.jpg")))[0]
             | (.verdict == "REAL" or .verdict == "FAKE") and (.faces | length) >= 1)
        and (.results | map(select(.file | endswith("chelsea.png")))[0] | .verdict == "NO_FACE")
        and (.results | map(select(.file | endswith("astronaut-clip.mp4")))[0]
             | .media == "video" and (.verdict == "REAL" or .verdict == "FAKE"))' <<<"$json" >/dev/null 2>&1
  then pass "dfd scan --json inside: a face and a verdict for the portrait and the clip, NO_FACE for the cat"
  else fail "dfd scan --json inside answered: $(head -c 600 <<<"$json")"; fi
else
  skip "dfd scan: this build's dfd has no 'scan' command yet (dfd --help lists none)"
fi

# The server container: only when dfd has `serve`.
if has_cmd serve; then
  name="dfd-ci-$$"
  CONTAINERS+=("$name")
  if ! podman run -d --pull=never --name "$name" -p "127.0.0.1:${DFD_CONTAINER_PORT:-}:8000" "$IMAGE" >/dev/null; then
    fail "podman run -d $IMAGE"
  else
    hostport=$(podman port "$name" 8000/tcp | head -n1)
    url="http://$hostport"
    say "server container $name at $url"
    up=0
    for _ in $(seq 1 60); do
      if curl -fsS -m 2 "$url/v1/health" >/dev/null 2>&1; then up=1; break; fi
      [[ $(podman inspect --format '{{.State.Running}}' "$name") == true ]] || break
      sleep 1
    done
    if ((up)); then
      pass "server healthy at $url/v1/health: $(curl -sS -m 5 "$url/v1/health" | head -c 300)"
      # The image's own HEALTHCHECK command, run by podman inside the container.
      if out=$(podman healthcheck run "$name" 2>&1); then pass "the image's HEALTHCHECK passes ($out)"
      else fail "the image's HEALTHCHECK: $out"; fi

      # req CURL-ARGS...: the HTTP status in $code, the body in $body; both are printed.
      req() {
        local tmp; tmp=$(mktemp); TMP_PATHS+=("$tmp")
        code=$(curl -sS -m 120 -o "$tmp" -w '%{http_code}' "$@" 2>&1) || code="curl failed: $code"
        body=$(cat "$tmp")
        say "  $* -> $code $(head -c 400 <<<"$body")"
      }
      req -F file=@examples/astronaut.jpg "$url/predict_image"
      old_body=$body
      if [[ $code == 200 ]] && jq -e '(.prediction == "REAL" or .prediction == "FAKE")
            and (.confidence | type == "number" and . >= 0 and . <= 100)
            and (.raw_score | type == "number" and . >= 0 and . <= 1) and .error == null' <<<"$body" >/dev/null
      then pass "POST /predict_image (portrait): the original API's fields: $body"
      else fail "POST /predict_image (portrait): $code $body"; fi

      req -F file=@examples/chelsea.png "$url/predict_image"
      if [[ $code == 422 ]] && jq -e '.prediction == null and .error == "no face found"' <<<"$body" >/dev/null
      then pass "POST /predict_image (cat): 422 no face found"
      else fail "POST /predict_image (cat): want 422 {prediction:null,error:\"no face found\"}, got $code $body"; fi

      req -F file=@examples/astronaut.jpg "$url/v1/analyze"
      if [[ $code == 200 ]] && jq -e '.schema == "dfd.result/1" and (.results[0]
            | .media == "image" and (.verdict == "REAL" or .verdict == "FAKE") and (.faces | length) >= 1
              and (.p_fake | type == "number"))' <<<"$body" >/dev/null
      then
        pass "POST /v1/analyze (portrait): dfd.result/1 with a verdict and a face"
        # The two APIs must agree: raw_score is P(real) = 1 - p_fake, and the verdicts match.
        if jq -e -n --argjson a "$old_body" --argjson b "$body" '
              ($b.results[0]) as $r
              | (($a.raw_score - (1 - $r.p_fake)) | fabs) < 0.001 and $a.prediction == $r.verdict' >/dev/null 2>&1
        then pass "/predict_image and /v1/analyze agree (raw_score = 1 - p_fake, same verdict)"
        else fail "/predict_image ($old_body) and /v1/analyze disagree"; fi
      else fail "POST /v1/analyze (portrait): $code $body"; fi

      req -H 'Accept: text/html' "$url/"
      if [[ $code == 200 ]] && grep -qiE '<!doctype html|<html' <<<"$body"; then pass "GET / (browser): the web page"
      else fail "GET / (browser): $code $(head -c 200 <<<"$body")"; fi
      req -H 'Accept: application/json' "$url/"
      if [[ $code == 200 ]] && jq -e 'type == "object"' <<<"$body" >/dev/null 2>&1; then pass "GET / (JSON client): status JSON"
      else fail "GET / (JSON client): $code $(head -c 200 <<<"$body")"; fi
    else
      fail "server never became healthy at $url/v1/health in 60 s; its log:"
      podman logs "$name" 2>&1 | tail -n 30 >&2
    fi
    # A clean stop: SIGTERM reaches dfd (start.sh execs it), which finishes and exits 0.
    podman stop -t 20 "$name" >/dev/null 2>&1 || true
    ec=$(podman inspect --format '{{.State.ExitCode}}' "$name" 2>/dev/null || echo '?')
    if [[ $ec == 0 ]]; then pass "server container stops cleanly on SIGTERM (exit 0)"
    else fail "server container exit status after SIGTERM: $ec"; fi
    if podman logs "$name" 2>&1 | grep -q 'predict_image'; then pass "server logs one line per request"
    else fail "server log has no request lines: $(podman logs "$name" 2>&1 | tail -n 5)"; fi
    podman logs "$name" > "$LOG_DIR/server.log" 2>&1 || true
  fi
else
  skip "server checks (health, HEALTHCHECK, /predict_image, /v1/analyze, page at /, clean stop): this build's dfd has no 'serve' command yet"
fi

# ---- summary ------------------------------------------------------------------------------
echo "== container test summary"
printf '  %s\n' "${RESULTS[@]}"
echo "  image $IMAGE: $SIZE_MB MB (limit $MAX_MB MB); build $BUILD_S s; whole script $(( $(date +%s) - T_START )) s"
if ((FAILED)); then echo "== container test FAILED"; exit 1; fi
echo "== container test passed (SKIP lines above were not checked)"
