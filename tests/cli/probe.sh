#!/usr/bin/env bash
# `dfd probe`: JSON and human output for images and videos, exit codes 0/1/2.
set -uo pipefail
BIN=${DFD_BIN:-build/dfd}
SRC=${DFD_SOURCE_DIR:-.}
fail() { echo "FAIL: $*" >&2; exit 1; }
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT

out=$("$BIN" probe "$SRC/examples/astronaut.png" --json) || fail "probe png exit $?"
grep -q '"media": "image"' <<<"$out" || fail "png media: $out"
grep -q '"format": "PNG"' <<<"$out" || fail "png format: $out"
grep -q '"width": 512' <<<"$out" || fail "png width: $out"

out=$("$BIN" probe --json "$SRC/examples/astronaut-clip.mp4") || fail "probe mp4 exit $?"
for want in '"media": "video"' '"codec": "h264"' '"width": 256' '"frames": 30' '"frames_estimated": false' '"duration_s": 3.0'; do
  grep -qF "$want" <<<"$out" || fail "clip: missing $want in $out"
done

# Several files: a JSON array, in order; human output one line per file.
out=$("$BIN" probe --json "$SRC/examples/chelsea.png" "$SRC/examples/astronaut.jpg") || fail "two files exit $?"
[[ $(head -c1 <<<"$out") == "[" ]] || fail "two files are not an array: $out"
out=$("$BIN" probe "$SRC/examples/chelsea.png" "$SRC/examples/astronaut-clip.mp4") || fail "human exit $?"
grep -q 'chelsea.png: image, PNG, 451x300' <<<"$out" || fail "human png: $out"
grep -q 'astronaut-clip.mp4: video, .*h264, 256x256, 10.000 fps, 3.000 s, 30 frames' <<<"$out" || fail "human mp4: $out"

# A file that is not media: message on stderr, "error" in the JSON, exit 1; others still probed.
echo "not a video" >"$tmp/x.mp4"
out=$("$BIN" probe --json "$tmp/x.mp4" "$SRC/examples/chelsea.png" 2>"$tmp/err"); rc=$?
[[ $rc == 1 ]] || fail "bad file exit $rc"
grep -q 'unsupported format' "$tmp/err" || fail "stderr: $(cat "$tmp/err")"
grep -q '"error": "unsupported format' <<<"$out" || fail "json error: $out"
grep -q '"width": 451' <<<"$out" || fail "second file not probed: $out"
"$BIN" probe "$tmp/missing.png" >/dev/null 2>&1; [[ $? == 1 ]] || fail "missing file exit"

# Usage errors exit 2.
"$BIN" probe >/dev/null 2>&1; [[ $? == 2 ]] || fail "no file exit"
"$BIN" probe --frobnicate x >/dev/null 2>&1; [[ $? == 2 ]] || fail "bad option exit"

# The DFDC clips, when the research data is there.
D=${DFD_SHARED_DATA:-}
if [[ -n "$D" && -d "$D/videos" ]]; then
  out=$("$BIN" probe "$D/videos/abofeumbvv.mp4" --json) || fail "dfdc exit"
  for want in '"width": 1920' '"height": 1080' '"frames": 300' '"duration_s": 10.02'; do
    grep -qF "$want" <<<"$out" || fail "abofeumbvv: missing $want in $out"
  done
  out=$("$BIN" probe "$D/videos/brtujopkby.mp4" --json) || fail "dfdc exit"
  grep -q '"width": 1080' <<<"$out" && grep -q '"height": 1920' <<<"$out" || fail "brtujopkby: $out"
fi
echo ok
