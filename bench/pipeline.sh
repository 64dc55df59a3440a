#!/usr/bin/env bash
# bench/pipeline.sh [BUILD_DIR] [N_PHOTOS] — dfd scan end to end on the research data
# (../shared/data), with the shipped default model, as a user runs it:
#   videos   each clip of videos/ (10 s, 1080p and portrait, 30 sampled frames): wall
#            seconds per clip in one `dfd scan` run (models loaded once), the timing_ms
#            split (decode, faces, classify) and, as the baseline measured in the same
#            run, the wall time of `ffmpeg -threads T -i CLIP -f null -` (decoding every
#            frame of the clip and nothing else);
#   photos   N_PHOTOS (default 1000) face photos of utkface-real in one folder: images/s
#            for `dfd scan DIR`, and the same for `dfd faces FILES` (face search alone).
# Targets (issue 5): a clip in <= 2.0 s, >= 40 photos/s on this 2-core machine.
# Run it on a quiet machine: other work on the cores shows up directly in wall times.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD_DIR=${1:-build}
N_PHOTOS=${2:-1000}
BIN="$BUILD_DIR/dfd"
DATA=${DFD_SHARED_DATA:-../shared/data}
[[ -x "$BIN" ]] || { echo "no $BIN: build first" >&2; exit 1; }
[[ -d "$DATA/videos" ]] || { echo "no research data at $DATA" >&2; exit 1; }
exec python3 - "$BIN" "$DATA" "$N_PHOTOS" <<'PY'
import json, os, resource, shutil, subprocess, sys, tempfile, time

binary, data, n_photos = sys.argv[1], sys.argv[2], int(sys.argv[3])
cores = os.cpu_count()
load = os.getloadavg()[0]

def timed(cmd):
    c0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.time()
    out = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.time() - t0
    c1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    if out.returncode not in (0,):
        sys.exit(f"{' '.join(cmd[:3])} ...: exit {out.returncode}\n{out.stderr[-2000:]}")
    return out.stdout, wall, (c1.ru_utime - c0.ru_utime) + (c1.ru_stime - c0.ru_stime)

print(f"machine: {cores} cores, load average {load:.2f} at the start")
vdir = os.path.join(data, "videos")
clips = sorted(os.path.join(vdir, f) for f in os.listdir(vdir) if f.endswith(".mp4"))
out, wall, cpu = timed([binary, "scan", "--json", *clips])
res = json.loads(out)["results"]
print(f"\nvideos: {len(clips)} clips in one run: {wall:.2f} s wall ({wall / len(clips):.2f} s/clip), "
      f"{cpu / len(clips):.2f} s CPU/clip")
print(f"{'clip':<16}{'verdict':<9}{'p_fake':>7}{'frames':>7}{'dec+rgb':>8}{'faces':>8}{'classify':>9}{'total s':>8}"
      f"{'ffmpeg s':>9}{'ratio':>7}")
totals = []
for c, r in zip(clips, res):
    t = r["timing_ms"]
    _, fw, _ = timed(["ffmpeg", "-nostdin", "-v", "error", "-threads", str(cores), "-i", c, "-f", "null", "-"])
    totals.append(t["total"] / 1000)
    print(f"{os.path.basename(c):<16}{r['verdict']:<9}{r['p_fake'] if r['p_fake'] is not None else float('nan'):>7.3f}"
          f"{len(r['frames']):>7}{t['decode'] / 1000:>8.2f}{t['faces'] / 1000:>8.2f}{t['classify'] / 1000:>9.2f}"
          f"{t['total'] / 1000:>8.2f}{fw:>9.2f}{t['total'] / 1000 / fw:>7.2f}")
print(f"slowest clip {max(totals):.2f} s (target <= 2.0 s); ratio = dfd scan / ffmpeg decoding the whole clip;\n"
      "dec+rgb (decoding thread + RGB conversion), faces and classify overlap: their sum exceeds the total")

udir = os.path.join(data, "utkface-real")
photos = sorted(os.listdir(udir))[:n_photos]
tmp = tempfile.mkdtemp(prefix="dfd-bench-")
try:
    for f in photos:
        os.symlink(os.path.abspath(os.path.join(udir, f)), os.path.join(tmp, f))
    out, wall, cpu = timed([binary, "scan", "--json", tmp])
    res = json.loads(out)["results"]
    verdicts = {}
    for r in res:
        verdicts[r["verdict"]] = verdicts.get(r["verdict"], 0) + 1
    _, fwall, fcpu = timed([binary, "faces", "--json", *(os.path.join(tmp, f) for f in photos)])
    print(f"\nphotos: {len(photos)} utkface-real portraits (200x200 JPEG) in one folder")
    print(f"  dfd scan DIR : {wall:.2f} s wall, {len(photos) / wall:.1f} images/s, {1000 * cpu / len(photos):.1f} ms CPU/image"
          f" (target >= 40 images/s); verdicts {verdicts}")
    print(f"  dfd faces    : {fwall:.2f} s wall, {len(photos) / fwall:.1f} images/s, {1000 * fcpu / len(photos):.1f} ms CPU/image"
          f" (face search alone: the baseline); scan/faces wall ratio {wall / fwall:.2f}")
finally:
    shutil.rmtree(tmp)
print(f"\nload average at the end {os.getloadavg()[0]:.2f}")
PY
