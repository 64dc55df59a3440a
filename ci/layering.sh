#!/usr/bin/env bash
# ci/layering.sh [ROOT] — checks the module layering written in docs/architecture.md: a
# module (a folder under ROOT/src/) includes only the headers of the modules its row of the
# "Modules" table names under "may include" (backticked names; `dfd` is include/dfd/, the
# public API), and every module it may include is in a row above its own. Any other
# `#include "module/..."` in ROOT/src/*/ fails the check, naming the file, the line and
# the rule. ROOT defaults to the repository this script is in; tests/cli/layering.sh runs
# it on the tree and on a copy with an upward include planted, which must fail.
set -euo pipefail
ROOT=${1:-$(cd "$(dirname "$0")/.." && pwd)}
DOC=$ROOT/docs/architecture.md
[[ -f $DOC ]] || { echo "layering: no $DOC" >&2; exit 2; }

declare -A allowed rank
order=()
# Rows of the Modules table: | `name` | owns | may include |
while IFS= read -r line; do
  [[ $line =~ ^\|\ \`([a-z_]+)\`\ \| ]] || continue
  mod=${BASH_REMATCH[1]}
  [[ -d $ROOT/src/$mod ]] || continue
  col=${line%|}; col=${col##*|}  # ... is the last cell
  names=" "
  while [[ $col =~ \`([a-z_]+)\`(.*) ]]; do
    n=${BASH_REMATCH[1]}; col=${BASH_REMATCH[2]}
    [[ $n == dfd || -d $ROOT/src/$n ]] && names+="$n "
  done
  rank[$mod]=${#order[@]}
  order+=("$mod")
  allowed[$mod]=$names
done < <(sed -n '/^## Modules/,/^## /p' "$DOC")
((${#order[@]})) || { echo "layering: no module table in $DOC" >&2; exit 2; }

bad=0
# Every folder under src/ is a module with a row.
for d in "$ROOT"/src/*/; do
  m=$(basename "$d")
  [[ -n ${rank[$m]+x} ]] || { echo "layering: src/$m has no row in docs/architecture.md's module table" >&2; bad=1; }
done
# A module may include only modules above it (the table is an order, not just a list).
for m in "${order[@]}"; do
  for n in ${allowed[$m]}; do
    [[ $n == dfd ]] && continue
    if [[ -z ${rank[$n]+x} ]] || ((rank[$n] >= rank[$m])); then
      echo "layering: docs/architecture.md lets $m include $n, which is not above it" >&2; bad=1
    fi
  done
done
# The includes themselves.
for m in "${order[@]}"; do
  while IFS=: read -r file lineno text; do
    [[ $text =~ \#[[:space:]]*include[[:space:]]*\"([a-z_]+)/ ]] || continue
    n=${BASH_REMATCH[1]}
    [[ $n == "$m" ]] && continue
    case "${allowed[$m]}" in *" $n "*) continue ;; esac
    echo "layering: ${file#"$ROOT"/}:$lineno includes \"$n/...\"; module $m may include only:${allowed[$m]}(docs/architecture.md)" >&2
    bad=1
  done < <(grep -Hn '^[[:space:]]*#[[:space:]]*include[[:space:]]*"' "$ROOT"/src/"$m"/*.[ch] "$ROOT"/src/"$m"/*.def 2>/dev/null || true)
done
if ((bad)); then exit 1; fi
echo "layering: ${#order[@]} modules, every include as docs/architecture.md allows"
