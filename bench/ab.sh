#!/usr/bin/env bash
# bench/ab.sh — compares two dfd builds on one `dfd bench` row, alternating them.
#
#   bench/ab.sh OLD_DFD NEW_DFD ROUNDS [dfd bench arguments...]
#   bench/ab.sh /tmp/old/build/dfd build/dfd 10 --arch xception-image --mode infer --batch 8 --precision bf16
#
# The development machine is a VM whose speed swings up to 2x within seconds (another
# tenant on the same cores), so one run of each says little. This runs OLD, NEW, OLD, NEW...
# ROUNDS times and prints, for each, images/s of every round, the best and the median, and
# the ratio NEW/OLD of both. Pass exactly one --arch, --mode, --precision and --batch.
set -euo pipefail
if [ $# -lt 3 ]; then
    sed -n '2,11p' "$0" | sed 's/^# \{0,1\}//'
    exit 2
fi
old=$1 new=$2 rounds=$3
shift 3
for b in "$old" "$new"; do
    [ -x "$b" ] || { echo "ab.sh: $b is not an executable" >&2; exit 2; }
done
tmp=$(mktemp)
trap 'rm -f "$tmp"' EXIT
for _ in $(seq "$rounds"); do
    for who in old new; do
        b=$old
        [ "$who" = new ] && b=$new
        # the last line is the row; column 7 is images/s
        v=$("$b" bench "$@" 2>&1 | tail -1 | awk '{print $7}')
        echo "$who $v" >>"$tmp"
    done
done
awk -v nproc="$(nproc)" '
function median(arr, n,    i, j, t) {
    for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (arr[j] < arr[i]) { t = arr[i]; arr[i] = arr[j]; arr[j] = t }
    return n % 2 ? arr[(n + 1) / 2] : (arr[n / 2] + arr[n / 2 + 1]) / 2
}
{ v[$1, ++n[$1]] = $2; all[$1] = all[$1] " " $2; if ($2 > best[$1]) best[$1] = $2 }
END {
    for (w = 0; w < 2; w++) {
        k = w ? "new" : "old"
        for (i = 1; i <= n[k]; i++) a[i] = v[k, i]
        med[k] = median(a, n[k])
        printf "%s: best %.1f, median %.1f images/s over %d rounds:%s\n", k, best[k], med[k], n[k], all[k]
    }
    printf "new/old: best %.2fx, median %.2fx (%d cores)\n", best["new"] / best["old"], med["new"] / med["old"], nproc
}' "$tmp"
