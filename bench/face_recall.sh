#!/usr/bin/env bash
# bench/face_recall.sh [BUILD_DIR] [MAX_DFDC] — how well dfd's BlazeFace finds faces on the
# research data (../shared/data), with `dfd faces` in its default automatic mode:
#   utkface-real      3,000 portraits, one person each: share with exactly one face (goal >= 99%)
#   dfdc-faces/real   tight 224x224 crops: share with a face, as they are and padded by half
#                     their size on each side (goal >= 95%), and where the detector box falls
#                     inside the crops (the measurement behind the default crop margin,
#                     docs/preprocessing.md)
#   videos            30 sampled frames per clip: frames covered by the main track (goal >= 27)
# and the time per image (wall and CPU, end to end: decoding included, one process).
# Long: several minutes on 2 cores. MAX_DFDC limits the DFDC crops used (default: all).
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD_DIR=${1:-build}
MAX_DFDC=${2:-0}
BIN="$BUILD_DIR/dfd"
DATA=${DFD_SHARED_DATA:-../shared/data}
[[ -x "$BIN" ]] || { echo "no $BIN: build first" >&2; exit 1; }
[[ -d "$DATA" ]] || { echo "no research data at $DATA" >&2; exit 1; }
exec python3 - "$BIN" "$DATA" "$MAX_DFDC" <<'PY'
import json, os, resource, statistics, subprocess, sys, time

binary, data, max_dfdc = sys.argv[1], sys.argv[2], int(sys.argv[3])

def run(files, *opts):
    """dfd faces --json on files, in chunks; returns (results, wall s, cpu s)."""
    results, t0 = [], time.time()
    c0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    for i in range(0, len(files), 500):
        out = subprocess.run([binary, "faces", "--json", *opts, *files[i:i + 500]], capture_output=True, text=True)
        if out.returncode not in (0, 1):
            sys.exit("dfd faces failed: " + out.stderr)
        results += json.loads(out.stdout)["results"]
    c1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    return results, time.time() - t0, (c1.ru_utime + c1.ru_stime) - (c0.ru_utime + c0.ru_stime)

def timing(n, wall, cpu):
    return "%.1f ms/image wall, %.1f ms/image CPU" % (1000 * wall / n, 1000 * cpu / n)

def listdir(d, ext):
    return sorted(os.path.join(d, f) for f in os.listdir(d) if f.lower().endswith(ext))

utk = listdir(os.path.join(data, "utkface-real"), ".jpg")
res, wall, cpu = run(utk)
counts = [len(r["faces"]) for r in res]
one = sum(c == 1 for c in counts)
print("utkface-real: %d images, exactly one face %d (%.2f%%), none %d, several %d; %s" % (
    len(res), one, 100.0 * one / len(res), counts.count(0), sum(c > 1 for c in counts), timing(len(res), wall, cpu)))

dfdc = listdir(os.path.join(data, "dfdc-faces", "real"), ".jpg")
if max_dfdc > 0:
    dfdc = dfdc[:max_dfdc]
for label, opts in (("as is", ()), ("padded 0.5", ("--pad", "0.5"))):
    res, wall, cpu = run(dfdc, *opts)
    found = sum(len(r["faces"]) > 0 for r in res)
    print("dfdc-faces/real %s: %d crops, with a face %d (%.2f%%); %s" % (
        label, len(res), found, 100.0 * found / len(res), timing(len(res), wall, cpu)))
    if opts:
        ratio, dx, dy = [], [], []
        for r in res:
            if not r["faces"]:
                continue
            x, y, w, h = r["faces"][0]["box"]
            side = max(w, h)
            ratio.append(r["width"] / side)
            dx.append((r["width"] / 2 - (x + w / 2)) / side)
            dy.append((r["height"] / 2 - (y + h / 2)) / side)
        def q(v):
            v = sorted(v)
            return "median %.3f (quartiles %.3f, %.3f)" % (v[len(v) // 2], v[len(v) // 4], v[3 * len(v) // 4])
        print("  crop side / box side: " + q(ratio))
        print("  crop centre - box centre, in box sides: x " + q(dx) + ", y " + q(dy))

videos = listdir(os.path.join(data, "videos"), ".mp4")
res, wall, cpu = run(videos, "--frames", "30")
for r in res:
    t = r.get("tracks") or []
    print("video %s: %d track(s), main track on %d of %d frames" % (
        os.path.basename(r["file"]), len(t), len(t[0]["frames"]) if t else 0, r.get("frames_sampled", 0)))
print("videos: %.1f s wall, %.1f s CPU per clip (30 frames, decoding included)" % (wall / len(res), cpu / len(res)))
PY
