#!/usr/bin/env bash
# `cmake --install`: libdfd installs and links like any C library. Into a temporary prefix:
# the files are where they belong (libdfd.so.0 as soname, libdfd.a, dfd.h, dfd.pc, dfd, the
# models and web files under share/dfd); examples/analyze.c builds with pkg-config against
# the shared library and, with --static, against libdfd.a, and both print a verdict for
# examples/astronaut.jpg, finding the installed models (beside libdfd.so; through
# $DFD_MODELS_DIR for the static program); the installed dfd finds them itself; libdfd.so
# exports exactly the DFD_API functions of include/dfd/*.h, nothing else, and every public
# header compiles on its own; the version is dfd.h's
# everywhere. Runs from a folder with no models/ so that nothing is found by accident.
set -uo pipefail
BUILD=${DFD_BUILD_DIR:-build}
SRC=${DFD_SOURCE_DIR:-.}
SRC=$(cd "$SRC" && pwd)
fail() { echo "FAIL: $*" >&2; exit 1; }
for t in cc pkg-config nm readelf ldd; do
  command -v "$t" >/dev/null || { echo "skipped: $t is not installed"; exit 77; }
done
[[ -f "$SRC/models/registry/blazeface-short.safetensors" ]] || { echo "skipped: face models missing (run ./setup.sh)"; exit 77; }
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
P="$tmp/prefix"
unset DFD_MODELS_DIR

cmake --install "$BUILD" --prefix "$P" >"$tmp/install.log" 2>&1 || { cat "$tmp/install.log"; fail "cmake --install"; }

# ---- The files.
pc=$(find "$P" -name dfd.pc -path '*/pkgconfig/*') || true
[[ -n "$pc" ]] || fail "no dfd.pc installed"
LIB=$(dirname "$(dirname "$pc")")
for h in "$SRC"/include/dfd/*.h; do
  [[ -f "$P/include/dfd/$(basename "$h")" ]] || fail "not installed: include/dfd/$(basename "$h")"
done
for f in "$LIB/libdfd.a" "$LIB/libdfd.so" "$LIB/libdfd.so.0" "$P/include/dfd/dfd.h" "$P/bin/dfd" \
         "$P/share/dfd/models/registry/blazeface-short.safetensors" "$P/share/dfd/web/index.html"; do
  [[ -e "$f" ]] || fail "not installed: ${f#"$P"/}"
done
ls "$P"/share/dfd/models/dfd-image-*.safetensors >/dev/null 2>&1 || fail "no image model under share/dfd/models"
[[ -L "$LIB/libdfd.so" && -L "$LIB/libdfd.so.0" ]] || fail "libdfd.so and libdfd.so.0 should be links to the versioned file"
soname=$(readelf -d "$LIB/libdfd.so" | sed -n 's/.*(SONAME).*\[\(.*\)\]/\1/p')
[[ "$soname" == libdfd.so.0 ]] || fail "soname is '$soname', not libdfd.so.0"

# ---- One version: dfd.h's, in the .pc, the library's file name and the dfd command.
hv=$(sed -n 's/^#define DFD_VERSION_\(MAJOR\|MINOR\|PATCH\) \([0-9]*\)$/\2/p' "$SRC/include/dfd/dfd.h" | paste -sd.)
[[ "$hv" =~ ^[0-9]+\.[0-9]+\.[0-9]+$ ]] || fail "cannot read the version from dfd.h: '$hv'"
export PKG_CONFIG_PATH="$LIB/pkgconfig"
[[ $(pkg-config --modversion dfd) == "$hv" ]] || fail "dfd.pc says $(pkg-config --modversion dfd), dfd.h $hv"
[[ -f "$LIB/libdfd.so.$hv" ]] || fail "no libdfd.so.$hv"
"$P/bin/dfd" version >"$tmp/version" 2>&1 || fail "dfd version: $(cat "$tmp/version")"
grep -q "$hv" "$tmp/version" || fail "dfd version does not say $hv: $(cat "$tmp/version")"
[[ $(pkg-config --variable=prefix dfd) == "$P" ]] || fail "dfd.pc prefix is $(pkg-config --variable=prefix dfd), not $P"

# ---- Exports: only dfd_ names, and exactly the DFD_API functions of the public headers.
nm -D --defined-only "$LIB/libdfd.so" | awk '{print $NF}' | sort >"$tmp/exported"
[[ -s "$tmp/exported" ]] || fail "libdfd.so exports nothing"
if grep -v '^dfd_' "$tmp/exported" >"$tmp/foreign"; then
  fail "libdfd.so exports names without the dfd_ prefix: $(head -20 "$tmp/foreign" | tr '\n' ' ')"
fi
cat "$SRC"/include/dfd/*.h | grep -o '^DFD_API [^(]*(' | sed 's/($//; s/.*[ *]//' | sort >"$tmp/declared"
[[ $(wc -l <"$tmp/declared") -ge 20 ]] || fail "found only $(wc -l <"$tmp/declared") DFD_API functions in include/dfd/"
diff "$tmp/declared" "$tmp/exported" >"$tmp/diff" ||
  fail "exports differ from the DFD_API functions of include/dfd/ (< declared only, > exported only): $(tr '\n' ' ' <"$tmp/diff")"
# Each public header on its own, as C and as C++ would see it (C here: no C++ compiler needed).
for h in "$P"/include/dfd/*.h; do
  printf '#include <dfd/%s>\nint main(void) { return 0; }\n' "$(basename "$h")" >"$tmp/h.c"
  cc -std=c11 -Wall -Wextra -Werror -I"$P/include" -c "$tmp/h.c" -o "$tmp/h.o" 2>"$tmp/h.err" ||
    fail "include/dfd/$(basename "$h") does not compile on its own: $(cat "$tmp/h.err")"
done

# ---- examples/analyze.c against the installed library, shared and static.
# A sanitized library needs its runtime in the program too.
SAN=()
[[ "${DFD_SANITIZED:-0}" == 1 ]] && SAN=(-fsanitize=address,undefined)
mkdir "$tmp/work" && cd "$tmp/work" || fail "cd"
# shellcheck disable=SC2046
cc -std=c11 -Wall -Wextra -Werror "${SAN[@]}" "$SRC/examples/analyze.c" -o analyze-shared \
  $(pkg-config --cflags --libs dfd) -Wl,-rpath,"$LIB" 2>"$tmp/cc1" || fail "building against libdfd.so: $(cat "$tmp/cc1")"
grep -q "libdfd.so.0 => $LIB/libdfd.so.0" <<<"$(ldd ./analyze-shared)" || fail "analyze-shared does not load $LIB/libdfd.so.0: $(ldd ./analyze-shared)"
static_libs=$(pkg-config --cflags --static --libs dfd) || fail "pkg-config --static"
static_libs=${static_libs/-ldfd /-l:libdfd.a }
# shellcheck disable=SC2086
cc -std=c11 -Wall -Wextra -Werror "${SAN[@]}" "$SRC/examples/analyze.c" -o analyze-static $static_libs 2>"$tmp/cc2" ||
  fail "building against libdfd.a ($static_libs): $(cat "$tmp/cc2")"
grep -q libdfd <<<"$(ldd ./analyze-static)" && fail "analyze-static loads libdfd.so: $(ldd ./analyze-static)"

verdict_re='^.*astronaut\.jpg: (REAL|FAKE) p_fake=[01]\.[0-9]{3}'
out=$(./analyze-shared "$SRC/examples/astronaut.jpg" 2>&1) || fail "analyze-shared: $out"
[[ "$out" =~ $verdict_re ]] || fail "analyze-shared printed no verdict: $out"
shared_out=$out
out=$(DFD_MODELS_DIR="$P/share/dfd/models" ./analyze-static "$SRC/examples/astronaut.jpg" 2>&1) || fail "analyze-static: $out"
[[ "$out" =~ $verdict_re ]] || fail "analyze-static printed no verdict: $out"
[[ "$out" == "$shared_out" ]] || fail "static and shared disagree: '$out' vs '$shared_out'"
# A failure comes with its status code (DFD_E_CORRUPT = 5 for a cut JPEG).
head -c 3000 "$SRC/examples/astronaut.jpg" >cut.jpg
out=$(./analyze-shared cut.jpg 2>&1); rc=$?
[[ $rc == 1 && "$out" == *"cut.jpg: ERROR status=5 "* ]] || fail "cut JPEG (exit $rc): $out"

# ---- The installed dfd finds its models under share/dfd by itself.
out=$("$P/bin/dfd" scan "$SRC/examples/astronaut.jpg" 2>&1) || fail "installed dfd scan: $out"
grep -Eq 'REAL|FAKE' <<<"$out" || fail "installed dfd scan printed no verdict: $out"
echo "ok: installed to $P; analyze (shared, static) and dfd: ${shared_out##*: }"
