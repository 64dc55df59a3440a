#!/usr/bin/env bash
# One option parser for every sub-command (src/cli/opts.c): every option each command's
# help lists (the help is written from the same table the parser reads) is accepted as
# --name=value and as --name value alike, with the value arriving intact; a flag refuses
# a value; an unknown option is a usage error (exit 2) on every command. `dfd --dry-parse`
# prints what a command parsed and runs nothing. Then the docs: the option table of
# docs/api.md is `dfd serve`'s options, no more and no fewer, and every command line the
# docs and the README show uses options its command has; `dfd train --help` names every
# architecture it can train.
set -uo pipefail
BIN=${DFD_BIN:-build/dfd}
SRC=${DFD_SOURCE_DIR:-.}
fail() { echo "FAIL: $*" >&2; exit 1; }
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT

# The commands: those `dfd --help` lists, and the hidden explain-eval.
cmds=$("$BIN" --help | sed -n 's/^  \([a-z-]*\)  .*/\1/p' | grep -v '^help$')
cmds="$cmds explain-eval"
[[ $(wc -w <<<"$cmds") -ge 11 ]] || fail "found only these commands in dfd --help: $cmds"

# Options of a command from its help: "  --name ARG  text" or "  -x, --name ARG  text";
# prints "name ARG" (ARG "-" for a flag).
options() {
  "$BIN" "$1" --help | sed -n 's/^  \(-[a-zA-Z], \)\{0,1\}--\([a-z0-9-]*\)\( \([^ ]*\)\)\{0,1\}.*/\2 \4/p' |
    awk '{print $1, ($2 == "" ? "-" : $2)}'
}

total=0
for c in $cmds; do
  options "$c" >"$tmp/$c.opts" || fail "$c --help"
  # A command without options (version) still refuses an unknown one.
  "$BIN" "$c" --no-such-option >/dev/null 2>"$tmp/err"; rc=$?
  [[ $rc == 2 ]] || fail "$c --no-such-option: exit $rc, not 2"
  grep -q "no-such-option" "$tmp/err" || fail "$c: the error does not name the option: $(cat "$tmp/err")"
  [[ -s "$tmp/$c.opts" ]] || { [[ $c == version ]] && continue; fail "$c: no options found in its help"; }
  eq=() sp=() want=()
  while read -r name arg; do
    total=$((total + 1))
    if [[ $arg == - ]]; then
      eq+=("--$name"); sp+=("--$name"); want+=("--$name")
      "$BIN" --dry-parse "$c" "--$name=1" >/dev/null 2>"$tmp/err"; rc=$?
      [[ $rc == 2 ]] || fail "$c --$name=1: a flag took a value (exit $rc)"
    else
      v="v-$name.1"
      eq+=("--$name=$v"); sp+=("--$name" "$v"); want+=("--$name=$v")
    fi
  done <"$tmp/$c.opts"
  "$BIN" --dry-parse "$c" "${eq[@]}" operand >"$tmp/eq" 2>"$tmp/err" || fail "$c with --opt=value: exit $?: $(cat "$tmp/err")"
  "$BIN" --dry-parse "$c" "${sp[@]}" operand >"$tmp/sp" 2>"$tmp/err" || fail "$c with --opt value: exit $?: $(cat "$tmp/err")"
  printf '%s\n' "${want[@]}" "operand operand" >"$tmp/want"
  diff "$tmp/want" "$tmp/eq" >"$tmp/diff" || fail "$c --opt=value parsed as: $(cat "$tmp/diff")"
  diff "$tmp/want" "$tmp/sp" >"$tmp/diff" || fail "$c --opt value parsed as: $(cat "$tmp/diff")"
done
[[ $total -ge 100 ]] || fail "only $total options in all the commands' help"

# A real parse (not dry): --opt=value reaches the command's own checks.
"$BIN" scan --frames=0 x.jpg >/dev/null 2>"$tmp/err"; [[ $? == 2 ]] && grep -q -- "--frames" "$tmp/err" || fail "scan --frames=0: $(cat "$tmp/err")"
"$BIN" faces --mode=sideways x.png >/dev/null 2>&1; [[ $? == 2 ]] || fail "faces --mode=sideways: not a usage error"
"$BIN" train image --data=x --arch=tiny-cnn --epochs=many >/dev/null 2>"$tmp/err"; [[ $? == 2 ]] && grep -q -- "--epochs" "$tmp/err" ||
  fail "train --epochs=many: $(cat "$tmp/err")"
"$BIN" eval --model=m --data=d --level=sideways >/dev/null 2>"$tmp/err"; [[ $? == 2 ]] && grep -q -- "--level" "$tmp/err" ||
  fail "eval --level=sideways: $(cat "$tmp/err")"
"$BIN" prepare --data=d --out=o --size=none >/dev/null 2>"$tmp/err"; [[ $? == 2 ]] && grep -q -- "--size" "$tmp/err" ||
  fail "prepare --size=none: $(cat "$tmp/err")"
"$BIN" serve --port=70000 >/dev/null 2>"$tmp/err"; [[ $? == 2 ]] && grep -q -- "--port" "$tmp/err" || fail "serve --port=70000: $(cat "$tmp/err")"
"$BIN" bench --batch=0 >/dev/null 2>&1; [[ $? == 2 ]] || fail "bench --batch=0: not a usage error"
"$BIN" import --frames=0 keras a b >/dev/null 2>&1; [[ $? == 2 ]] || fail "import --frames=0: not a usage error"

# docs/api.md's table of `dfd serve` options against its help.
sed -n '/^| `--host/,/^$/p' "$SRC/docs/api.md" | grep -o '`-[-a-z0-9]*' | tr -d '`' | sed 's/^-\{1,2\}//' | sort -u >"$tmp/doc-serve"
awk '{print $1}' "$tmp/serve.opts" | sort -u >"$tmp/help-serve"
echo q >>"$tmp/help-serve"; sort -u -o "$tmp/help-serve" "$tmp/help-serve" # -q, --quiet: the table says -q
grep -v '^quiet$' "$tmp/help-serve" >"$tmp/help-serve2"
grep -v '^quiet$' "$tmp/doc-serve" >"$tmp/doc-serve2"
diff "$tmp/help-serve2" "$tmp/doc-serve2" >"$tmp/diff" ||
  fail "docs/api.md's serve options (>) differ from dfd serve --help (<): $(tr '\n' ' ' <"$tmp/diff")"

# Every command line the docs show (a `dfd CMD ...` code span, or a line of a code block
# starting with dfd) uses only options that CMD has.
bad=""
for f in "$SRC"/README.md "$SRC"/docs/*.md; do
  { grep -o '`dfd [a-z-]*[^`]*`' "$f" | tr -d '`'; grep -E '^\s*(\$ )?(\./)?(build/)?dfd [a-z]' "$f" | sed -E 's/^\s*(\$ )?(\.\/)?(build\/)?//'; } |
    while read -r _ c rest; do
      [[ -f "$tmp/$c.opts" ]] || continue
      for o in $(grep -o -- ' --[a-z][a-z0-9-]*' <<<" $rest" | sed 's/^ --//'); do
        awk '{print $1}' "$tmp/$c.opts" | grep -x -- "$o" >/dev/null || echo "$(basename "$f"): dfd $c --$o"
      done
    done
done >"$tmp/stale"
[[ ! -s "$tmp/stale" ]] || fail "the docs show options the commands do not have: $(sort -u "$tmp/stale" | tr '\n' ';')"
# `dfd train --help` names every architecture it can train: the registry's names with a
# head (those with a '-'), as the refusal of an unknown one lists them.
known=$("$BIN" train image --arch nope --data x --out "$tmp/x" 2>&1 | sed -n 's/.*(known: \(.*\))$/\1/p' | tr -d ',')
[[ -n $known ]] || fail "train --arch nope did not list the known architectures"
"$BIN" train --help >"$tmp/train.help"
for a in $known; do
  [[ $a == *-* ]] || continue
  grep -q -- "$a" "$tmp/train.help" || fail "dfd train --help does not name the architecture $a"
done

echo "options: $total options of $(wc -w <<<"$cmds") commands parse as --opt=value and --opt value"
