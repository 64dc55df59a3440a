#!/usr/bin/env bash
# `dfd bench`: usage errors exit 2; --json prints a JSON array with one well-formed row per
# (mode, precision, batch) measured, each with positive timings consistent with each other
# (images/s = 1000 / ms per image); runs on the tiny architecture so that it takes seconds.
set -uo pipefail
BIN=${DFD_BIN:-build/dfd}
fail() { echo "FAIL: $*" >&2; exit 1; }
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT

"$BIN" bench --arch no-such-arch >/dev/null 2>&1; [[ $? == 2 ]] || fail "unknown arch exit"
"$BIN" bench --precision fp16 >/dev/null 2>&1; [[ $? == 2 ]] || fail "bad precision exit"
"$BIN" bench --batch 0 >/dev/null 2>&1; [[ $? == 2 ]] || fail "bad batch exit"
grep -q "ms_per_image" <<<"$("$BIN" bench --help)" || fail "help text"

"$BIN" bench --json --arch tiny-cnn --precision fp32 --batch 2 --iters 2 --threads 1 --mode both >"$tmp/out.json" ||
  fail "bench exit $?"
command -v python3 >/dev/null || { echo "skipped JSON checks: no python3"; exit 0; }
python3 - "$tmp/out.json" <<'PY' || fail "JSON rows: $(cat "$tmp/out.json")"
import json, sys
rows = json.load(open(sys.argv[1]))
assert [(r["mode"], r["precision"], r["batch"]) for r in rows] == [("infer", "fp32", 2), ("train", "fp32", 2)], rows
for r in rows:
    assert set(r) >= {"arch", "precision", "batch", "threads", "ms_per_image", "images_per_s", "gflops"}, r
    assert r["arch"] == "tiny-cnn" and r["threads"] == 1, r
    assert r["ms_per_image"] > 0 and r["gflops"] >= 0, r
    assert abs(r["images_per_s"] * r["ms_per_image"] / 1000 - 1) < 0.01, r
PY
echo "ok"
