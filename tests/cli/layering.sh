#!/usr/bin/env bash
# ci/layering.sh: the tree keeps docs/architecture.md's module layering, and the check
# fails, naming the file, on an upward include planted in a copy of the tree. And the
# build enforces it for the CLI and the server: their targets have no src/ include path.
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

# So does the server, though it is part of the library.
cp "$SRC/src/cli/main.c" "$tmp/tree/src/cli/main.c"
printf '#include "core/core.h"\n' >> "$tmp/tree/src/server/http.c"
out=$(bash "$SRC/ci/layering.sh" "$tmp/tree" 2>&1) && fail "the server including an internal header passed"
grep -q 'src/server/http.c:[0-9]* includes "core/' <<<"$out" || fail "the message does not name the include: $out"
cp "$SRC/src/server/http.c" "$tmp/tree/src/server/http.c"

# The build: the CLI's and the server's include paths are include/ and their own folder
# (read from the Makefiles CMake wrote; skipped with another generator).
BUILD=${DFD_BUILD_DIR:-build}
ABS=$(cd "$SRC" && pwd) # CMake writes absolute paths
for t in dfd_cli dfd_server_obj; do
  f=$BUILD/CMakeFiles/$t.dir/flags.make
  [[ -f $f ]] || { echo "layering: no $f (not a Makefile build): include paths not checked"; continue; }
  inc=$(sed -n 's/^C_INCLUDES = //p' "$f")
  [[ -n $inc ]] || fail "$t: no C_INCLUDES in $f"
  for d in $inc; do
    d=${d#-I}; d=${d#-isystem}
    case $d in
      "$ABS"/src | "$ABS"/src/) fail "$t compiles with src/ on its include path" ;;
      "$ABS"/src/*) [[ $d == "$ABS/src/cli" || $d == "$ABS/src/server" ]] ||
        fail "$t compiles with $d on its include path" ;;
    esac
  done
done

# A row that lets a module include one below it is refused too.
sed -i 's/^| `media` | \(.*\) | `dfd`, `core` |$/| `media` | \1 | `dfd`, `core`, `detect` |/' "$tmp/tree/docs/architecture.md"
grep -q '`dfd`, `core`, `detect` |$' "$tmp/tree/docs/architecture.md" || fail "could not edit the table copy"
out=$(bash "$SRC/ci/layering.sh" "$tmp/tree" 2>&1) && fail "a table letting media include detect passed"
grep -q 'lets media include detect' <<<"$out" || fail "the message does not name the rule: $out"
echo "layering: ok"
