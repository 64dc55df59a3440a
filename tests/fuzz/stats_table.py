#!/usr/bin/env python3
"""Prints the per-harness fuzzing record (a Markdown table) from build-fuzz/fuzz-stats.tsv,
the lines ci/fuzz.sh appends after each run: total seconds, runs, executions, exec/s over
all runs, the most edges and features reached, and the runs that failed.
Usage: python3 tests/fuzz/stats_table.py [build-fuzz/fuzz-stats.tsv]"""
import sys

path = sys.argv[1] if len(sys.argv) > 1 else "build-fuzz/fuzz-stats.tsv"
agg = {}
for line in open(path):
    f = line.rstrip("\n").split("\t")
    if len(f) < 8:
        continue
    _, name, secs, execs, eps, cov, ft, result = f[:8]
    a = agg.setdefault(name, {"s": 0, "runs": 0, "execs": 0, "cov": 0, "ft": 0, "failed": 0})
    a["s"] += int(secs)
    a["runs"] += 1
    a["execs"] += int(execs or 0)
    a["cov"] = max(a["cov"], int(cov or 0))
    a["ft"] = max(a["ft"], int(ft or 0))
    a["failed"] += result != "ok"
print("| harness | fuzzed (s) | of the 1 h target | runs | executions | exec/s | edges | features | failed runs |")
print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
for name in sorted(agg):
    a = agg[name]
    print("| `%s` | %d | %.0f%% | %d | %d | %.0f | %d | %d | %d |" % (
        name, a["s"], 100.0 * a["s"] / 3600, a["runs"], a["execs"], a["execs"] / a["s"] if a["s"] else 0,
        a["cov"], a["ft"], a["failed"]))
