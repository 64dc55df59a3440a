#!/usr/bin/env bash
# ci/layering.sh: the tree keeps docs/architecture.md's module layering, and the check
# fails, naming the file, on an upward include planted in a copy of the tree.
set -uo pipefail
SRC=${DFD_SOURCE_DIR:-.}
fail() { echo "FAIL: $*" >&2; exit 1; }
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT

bash "$SRC/ci/layering.sh" "$SRC" || fail "the tree breaks the layering"

mkdir -p "$tmp/tree/docs"
cp "$SRC/docs/architecture.md" "$tmp/tree/docs/"
cp -r "$SRC/src" "$tmp/tree/src"
bash "$SRC/ci/layering.sh" "$tmp/tree" >/dev/null 2>&1 || fail "a plain copy of the tree fails"

# media is below detect: media including detect's header is upward.
printf '#include "detect/detect.h"\n' >> "$tmp/tree/src/media/sniff.c"
out=$(bash "$SRC/ci/layering.sh" "$tmp/tree" 2>&1) && fail "an upward include (media -> detect) passed"
grep -q 'src/media/sniff.c:[0-9]* includes "detect/' <<<"$out" || fail "the message does not name the include: $out"

# The CLI gets the public headers only.
cp "$SRC/src/media/sniff.c" "$tmp/tree/src/media/sniff.c"
printf '#include "media/media.h"\n' >> "$tmp/tree/src/cli/main.c"
bash "$SRC/ci/layering.sh" "$tmp/tree" >/dev/null 2>&1 && fail "the CLI including an internal header passed"

# A row that lets a module include one below it is refused too.
cp "$SRC/src/cli/main.c" "$tmp/tree/src/cli/main.c"
sed -i 's/^| `media` | \(.*\) | `dfd`, `core` |$/| `media` | \1 | `dfd`, `core`, `detect` |/' "$tmp/tree/docs/architecture.md"
grep -q '`dfd`, `core`, `detect` |$' "$tmp/tree/docs/architecture.md" || fail "could not edit the table copy"
out=$(bash "$SRC/ci/layering.sh" "$tmp/tree" 2>&1) && fail "a table letting media include detect passed"
grep -q 'lets media include detect' <<<"$out" || fail "the message does not name the rule: $out"
echo "layering: ok"
