#!/usr/bin/env bash
# The shipped synthetic-face model (models/dfd-synthetic-1.safetensors), once it exists:
# `dfd scan` loads it by default beside the image model, and a generated face from the
# research data (stable-diffusion-2.1-00000.jpg) is FAKE with kind "synthetic" ("both" only
# if the manipulation model fires on it too). Skips with a message while the file is absent.
set -uo pipefail
BIN=${DFD_BIN:-build/dfd}
SRC=${DFD_SOURCE_DIR:-.}
D=${DFD_SHARED_DATA:-}
fail() { echo "FAIL: $*" >&2; exit 1; }
S="$SRC/models/dfd-synthetic-1.safetensors"
[[ -f "$S" ]] || { echo "skipped: $S is not there yet (the synthetic-face model is being trained)"; exit 77; }
[[ -f "$SRC/models/registry/blazeface-short.safetensors" ]] || { echo "skipped: face models missing (run ./setup.sh)"; exit 77; }
command -v python3 >/dev/null || { echo "skipped: python3 missing"; exit 77; }
F="$D/synthetic-faces/fake/stable-diffusion-2.1-00000.jpg"
[[ -n "$D" && -f "$F" ]] || { echo "skipped: research data absent ($F)"; exit 77; }
export DFD_MODELS_DIR="$SRC/models/registry"
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
# The default search, as the README's first command runs it (the source tree's models/).
(cd "$SRC" && "$BIN" scan --json -q "$F") >"$tmp/r.json" || fail "scan exit $?"
python3 - "$tmp/r.json" <<'PY' || fail "the synthetic face"
import json, sys
r = json.load(open(sys.argv[1]))["results"][0]
print("p_synthetic %.4f (threshold %.4f), p_manipulated %.4f (threshold %.4f): %s %s" % (
    r["p_synthetic"], r["threshold_synthetic"], r["p_manipulated"], r["threshold_manipulated"], r["verdict"], r["kind"]))
assert r["model"]["synthetic"] == "dfd-synthetic-1", r["model"]
assert r["p_synthetic"] >= r["threshold_synthetic"], "the synthetic-face model does not fire on it"
assert r["verdict"] == "FAKE", r
want = "synthetic" if r["p_manipulated"] < r["threshold_manipulated"] else "both"
assert r["kind"] == want, (r["kind"], want)
PY
echo "synthetic model: all checks passed"
