#!/usr/bin/env bash
# The web page in headless Chromium against the real `dfd serve` and a real model (tiny-cnn
# trained here in a second: its verdicts mean nothing, so any verdict is accepted as long
# as the page shows it, coloured as it should be, with the boxes, the video's timeline and
# thumbnails), with a synthetic-face stand-in flagging every face, so the page must say a
# face looks AI-generated. test_server_browser checks exact verdicts with a stand-in analyzer; this
# checks the page on what the real pipeline returns. Screenshots: build/screenshots/real/.
set -uo pipefail
BIN=${DFD_BIN:-build/dfd}
SRC=${DFD_SOURCE_DIR:-.}
OUT=${DFD_BUILD_DIR:-build}/screenshots/real
CHROMIUM=${DFD_CHROMIUM:-/usr/bin/chromium}
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

for p in node ffmpeg; do command -v $p >/dev/null || skip "needs $p (setup.sh installs it)"; done
[[ -x $CHROMIUM ]] || skip "needs $CHROMIUM (Debian package chromium; setup.sh installs it)"
[[ -f $SRC/tests/browser/node_modules/playwright-core/package.json ]] ||
  skip "needs playwright-core in tests/browser/node_modules (setup.sh runs npm ci there)"
[[ -f $SRC/models/registry/blazeface-short.safetensors ]] ||
  skip "the face detector is not converted yet (setup.sh writes models/registry/)"

source "$SRC/tests/cli/lib/tiny_model.sh"
tiny_model "$tmp"

# A synthetic-face detector beside it: the shipped image model's weights re-saved as one,
# with threshold 0 so that it flags every face, which the page must then say in words.
SYN=() EXPECT_KIND=
M=$(ls "$SRC"/models/dfd-image-*.safetensors 2>/dev/null | sort | tail -1)
if [[ -n "$M" ]] && command -v python3 >/dev/null; then
  python3 "$SRC/tests/cli/st_meta.py" "$M" "$tmp/syn.safetensors" task=synthetic threshold=0 || fail "writing the stand-in"
  SYN=(--model-synthetic "$tmp/syn.safetensors") EXPECT_KIND="synthetic|both"
else
  echo "note: no shipped image model (or python3): the page is tested without a synthetic-face detector"
fi
"$BIN" serve --port 0 --model-image "$tmp/model/best.safetensors" "${SYN[@]}" --frames 6 --workers 1 --threads 2 2>"$tmp/serve.log" &
pid=$!
for _ in $(seq 300); do grep -q 'listening on' "$tmp/serve.log" && break; kill -0 $pid 2>/dev/null || break; sleep 0.1; done
port=$(sed -n 's|.*listening on http://127.0.0.1:\([0-9]*\)/.*|\1|p' "$tmp/serve.log")
[[ -n $port ]] || fail "the server did not start"

DFD_EXPECT_IMAGE_KIND=$EXPECT_KIND node "$SRC/tests/browser/page.test.cjs" "http://127.0.0.1:$port/" "$SRC/examples/astronaut.png" \
  "$SRC/examples/astronaut-clip.mp4" "$OUT" || fail "the page test failed; see $OUT/failure.png"
kill -TERM $pid; wait $pid; rc=$?; pid=
[[ $rc == 0 ]] || fail "server exit status $rc"
echo "server_browser: passed; screenshots in $OUT"
