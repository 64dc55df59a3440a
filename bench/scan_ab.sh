#!/usr/bin/env bash
# bench/scan_ab.sh — what a model costs end to end: `dfd scan` on the same face photos with
# two image models, run alternately (this VM's speed swings up to 2x within seconds, so
# only a ratio measured in one run means something).
#
#   bench/scan_ab.sh MODEL_A MODEL_B [ROUNDS] [N_PHOTOS] [BUILD_DIR]
#   bench/scan_ab.sh models/dfd-image-3.safetensors models/dfd-image-4.safetensors 3 300
#
# N_PHOTOS (default 300) UTKFace photos of ../shared/data are scanned by one process per
# round and model (models loaded once, both detectors as `dfd scan` runs by default);
# prints photos/s of every round, the median of each model and the ratio B/A.
set -euo pipefail
if [ $# -lt 2 ]; then
    sed -n '2,11p' "$0" | sed 's/^# \{0,1\}//'
    exit 2
fi
a=$1 b=$2 rounds=${3:-3} n=${4:-300} bin=${5:-build}/dfd
data=${DFD_SHARED_DATA:-../shared/data}
for m in "$a" "$b"; do [ -f "$m" ] || { echo "scan_ab.sh: no model $m" >&2; exit 2; }; done
[ -x "$bin" ] || { echo "scan_ab.sh: no $bin: build first" >&2; exit 2; }
[ -d "$data/utkface-real" ] || { echo "scan_ab.sh: no $data/utkface-real" >&2; exit 2; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
mkdir "$tmp/photos"
for f in $(ls "$data/utkface-real" | sort | head -"$n"); do ln -s "$(realpath "$data/utkface-real/$f")" "$tmp/photos/$f"; done
for _ in $(seq "$rounds"); do
    for who in A B; do
        m=$a
        [ "$who" = B ] && m=$b
        t0=$(date +%s.%N)
        "$bin" scan -q --json --model-image "$m" "$tmp/photos" >/dev/null || { echo "scan_ab.sh: scan with $m failed" >&2; exit 1; }
        t1=$(date +%s.%N)
        echo "$who $t0 $t1" >>"$tmp/r"
    done
done
python3 - "$tmp/r" "$a" "$b" "$n" <<'PY'
import statistics, sys
n = int(sys.argv[4])
rows = [(w, n / (float(t1) - float(t0))) for w, t0, t1 in (l.split() for l in open(sys.argv[1]))]
med = {}
for who, name in (("A", sys.argv[2]), ("B", sys.argv[3])):
    v = [x for w, x in rows if w == who]
    med[who] = statistics.median(v)
    print(f"{who} {name}: photos/s " + " ".join(f"{x:.1f}" for x in v) + f"  median {med[who]:.1f}")
print(f"B/A {med['B'] / med['A']:.2f}")
PY
