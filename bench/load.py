#!/usr/bin/env python3
"""bench/load.py — load test of `dfd serve` on loopback (issue 18).

Starts the server (build/dfd serve on 127.0.0.1, a free port), takes a single-request
reference answer for each photo and clip, then runs CLIENTS concurrent clients that post
face photos to /predict_image and /v1/analyze (alternating) until REQUESTS photo requests
are done, while other clients post clips to /v1/analyze and poll each job to completion.
Reports status counts, wrong answers (a verdict, or a P(fake) more than 1e-4 away, that
differs from the reference), connection errors, p50/p99 latency, throughput, and the
server's RSS (sampled every second: after warm-up, peak, after the run). Bounded in count
and time (--max-seconds); loopback only; standard library only.

  nice -n 19 python3 bench/load.py --requests 10000 --clients 50 > load.log 2>&1

Exit status 0 when the targets hold (0 wrong answers, no errors other than 503
backpressure, RSS after the run within 10% of RSS after warm-up), else 1.
"""
import argparse
import http.client
import json
import os
import random
import subprocess
import sys
import threading
import time

from loopback import free_port, multipart

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class Client:
    def __init__(self, port, timeout=600):
        self.port, self.timeout, self.conn = port, timeout, None

    def request(self, method, path, body=None, ctype=None):
        """(status, headers dict, body bytes); reconnects once on a dropped keep-alive."""
        for attempt in range(2):
            if self.conn is None:
                self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=self.timeout)
            try:
                h = {"Content-Type": ctype} if ctype else {}
                self.conn.request(method, path, body=body, headers=h)
                r = self.conn.getresponse()
                data = r.read()
                hd = {k.lower(): v for k, v in r.getheaders()}
                if hd.get("connection", "").lower() == "close":
                    self.close()
                return r.status, hd, data
            except (ConnectionResetError, BrokenPipeError, http.client.RemoteDisconnected):
                self.close()
                if attempt:
                    raise
            except Exception:
                self.close()
                raise

    def close(self):
        if self.conn:
            self.conn.close()
        self.conn = None


def verdict_of(route, status, body):
    """(verdict, p_fake) from an answer of /predict_image or /v1/analyze (image)."""
    j = json.loads(body)
    if route == "/predict_image":
        return j.get("prediction"), 1.0 - j["raw_score"] if j.get("raw_score") is not None else None
    r = j["results"][0]
    return r["verdict"], r.get("p_fake")


def clip_verdict(client, body, ctype, poll_s, deadline):
    """Posts a clip to /v1/analyze and polls its job: (final status, verdict, p_fake, statuses)."""
    statuses = []
    st, hd, data = client.request("POST", "/v1/analyze", body, ctype)
    statuses.append(st)
    if st != 202:
        return st, None, None, statuses
    url = json.loads(data)["status_url"]
    while time.time() < deadline:
        time.sleep(poll_s)
        st, hd, data = client.request("GET", url)
        statuses.append(st)
        if st != 200:
            return st, None, None, statuses
        j = json.loads(data)
        if j["state"] in ("done", "failed", "cancelled"):
            if j["state"] != "done":
                return st, j["state"], None, statuses
            r = j["result"]["results"][0]
            return st, r["verdict"], r.get("p_fake"), statuses
    return None, "timeout", None, statuses


def rss_kb(pid):
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        return None


def pct(v, q):
    if not v:
        return float("nan")
    v = sorted(v)
    return v[min(len(v) - 1, int(q * len(v)))]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--dfd", default=os.path.join(ROOT, "build", "dfd"))
    ap.add_argument("--photos", default="/work/shared/data/utkface-real,/work/shared/data/synthetic-faces",
                    help="comma-separated folders of face photos (JPEG)")
    ap.add_argument("--n-photos", type=int, default=40, help="distinct photos used")
    ap.add_argument("--videos", default="/work/shared/data/videos")
    ap.add_argument("--requests", type=int, default=10000, help="photo requests in all")
    ap.add_argument("--clients", type=int, default=50, help="concurrent photo clients")
    ap.add_argument("--clip-clients", type=int, default=2, help="concurrent clip clients (beside the photo clients)")
    ap.add_argument("--clips", type=int, default=12, help="clips posted in all (0: none)")
    ap.add_argument("--warmup", type=int, default=500, help="photo requests before the warm-up RSS is taken")
    ap.add_argument("--workers", type=int, default=0, help="dfd serve --workers (0: its default)")
    ap.add_argument("--max-seconds", type=float, default=7200, help="stop the run after this long")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--port", type=int, default=0, help="use a server already running on this port")
    ap.add_argument("--server-log", default="/tmp/dfd-load-server.log", help="the started server's log")
    a = ap.parse_args()
    rnd = random.Random(a.seed)

    photos = []
    for d in a.photos.split(","):
        fs = sorted(f for f in os.listdir(d) if f.lower().endswith(".jpg"))
        photos += [os.path.join(d, f) for f in fs]
    photos = rnd.sample(photos, min(a.n_photos, len(photos)))
    photo_data = [(os.path.basename(p), open(p, "rb").read()) for p in photos]
    clips = sorted(os.path.join(a.videos, f) for f in os.listdir(a.videos) if f.endswith(".mp4")) if a.clips else []
    clip_data = [(os.path.basename(p), open(p, "rb").read()) for p in clips]

    server = None
    port = a.port
    if not port:
        port = free_port()
        cmd = [a.dfd, "serve", "--host", "127.0.0.1", "--port", str(port), "-q"]
        if a.workers:
            cmd += ["--workers", str(a.workers)]
        # Its log goes to a file (a pipe nobody reads would stall the server once full).
        log = open(a.server_log, "w")
        server = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
        c = Client(port, timeout=5)
        for _ in range(600):
            try:
                if c.request("GET", "/v1/health")[0] == 200:
                    break
            except OSError:
                pass
            time.sleep(0.5)
        else:
            print("load: the server did not come up (see %s)" % a.server_log, file=sys.stderr)
            server.kill()
            server.wait()
            return 1
        c.close()
    try:
        return run(a, port, server, photo_data, clip_data)
    finally:
        if server and server.poll() is None:
            server.terminate()
            try:
                server.wait(60)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()


def run(a, port, server, photo_data, clip_data):
    pid = server.pid if server else None
    print("load: server on port %d (pid %s); %d photos, %d clips" % (port, pid, len(photo_data), len(clip_data)),
          flush=True)

    # Reference answers: one request at a time, nothing else running.
    ref = {}
    c = Client(port)
    for name, data in photo_data:
        for route in ("/predict_image", "/v1/analyze"):
            ct, body = multipart(name, data)
            st, _, out = c.request("POST", route, body, ct)
            if st != 200:
                print("load: reference %s %s: status %d %s" % (route, name, st, out[:200]), file=sys.stderr)
                return 1
            ref[(route, name)] = verdict_of(route, st, out)
    for name, data in clip_data:
        ct, body = multipart(name, data)
        st, v, p, _ = clip_verdict(c, body, ct, 0.5, time.time() + 900)
        ref[("clip", name)] = (v, p)
        print("load: reference clip %s: %s p_fake=%s" % (name, v, p), flush=True)
    c.close()
    print("load: references taken", flush=True)

    lock = threading.Lock()
    stats = {"status": {}, "clip_status": {}, "wrong": [], "errors": [], "lat": [], "clip_lat": [], "done": 0,
             "issued": 0, "clips_done": 0, "clips_issued": 0, "max_dp": 0.0}
    rss = {"warm": None, "samples": []}
    t_start = time.time()
    deadline = t_start + a.max_seconds
    stop = threading.Event()

    def take(kind):
        with lock:
            if kind == "photo":
                if stats["issued"] >= a.requests:
                    return None
                stats["issued"] += 1
                return stats["issued"]
            if stats["clips_issued"] >= a.clips:
                return None
            stats["clips_issued"] += 1
            return stats["clips_issued"]

    def check(key, got, route):
        want = ref[key]
        dp = abs(got[1] - want[1]) if got[1] is not None and want[1] is not None else 0.0
        with lock:
            stats["max_dp"] = max(stats["max_dp"], dp)
            if got[0] != want[0] or dp > 1e-4 or (got[1] is None) != (want[1] is None):
                stats["wrong"].append((route, key[1], got, want))

    def photo_client(i):
        c = Client(port)
        r = random.Random(a.seed * 1000 + i)
        while not stop.is_set() and time.time() < deadline:
            n = take("photo")
            if n is None:
                break
            name, data = r.choice(photo_data)
            route = "/predict_image" if n % 2 else "/v1/analyze"
            ct, body = multipart(name, data)
            t0 = time.time()
            try:
                st, hd, out = c.request("POST", route, body, ct)
            except Exception as e:  # noqa: BLE001 — every failure is counted, none hidden
                with lock:
                    stats["errors"].append("%s: %r" % (route, e))
                c.close()
                continue
            dt = time.time() - t0
            with lock:
                stats["status"][st] = stats["status"].get(st, 0) + 1
                if st == 200:
                    stats["lat"].append(dt)
                stats["done"] += 1
                done = stats["done"]
            if st == 200:
                check((route, name), verdict_of(route, st, out), route)
            elif st == 503:
                time.sleep(float(hd.get("retry-after", "1")) / 5)  # backpressure: back off a little
            if done == a.warmup and pid:
                rss["warm"] = rss_kb(pid)
        c.close()

    def clip_client(i):
        c = Client(port)
        while not stop.is_set() and time.time() < deadline:
            n = take("clip")
            if n is None:
                break
            name, data = clip_data[(n - 1) % len(clip_data)]
            ct, body = multipart(name, data)
            t0 = time.time()
            try:
                st, v, p, sts = clip_verdict(c, body, ct, 1.0, deadline)
            except Exception as e:  # noqa: BLE001
                with lock:
                    stats["errors"].append("clip: %r" % (e,))
                c.close()
                continue
            with lock:
                for s in sts:
                    stats["clip_status"][s] = stats["clip_status"].get(s, 0) + 1
                stats["clips_done"] += 1
                if v in ("REAL", "FAKE", "NO_FACE"):
                    stats["clip_lat"].append(time.time() - t0)
            if v in ("REAL", "FAKE", "NO_FACE", "ERROR"):
                check(("clip", name), (v, p), "clip")
            elif sts and sts[0] != 503:
                with lock:
                    stats["wrong"].append(("clip", name, (v, p), ref[("clip", name)]))
        c.close()

    def sampler():
        tick = 0
        while not stop.wait(1.0):
            tick += 1
            if pid:
                v = rss_kb(pid)
                if v:
                    rss["samples"].append((time.time() - t_start, v))
            with lock:
                d, cd = stats["done"], stats["clips_done"]
            if tick % 30 == 0:
                print("load: %.0f s: %d photo requests, %d clips done, RSS %s kB" %
                      (time.time() - t_start, d, cd, rss["samples"][-1][1] if rss["samples"] else "?"), flush=True)

    threads = [threading.Thread(target=photo_client, args=(i,)) for i in range(a.clients)]
    threads += [threading.Thread(target=clip_client, args=(i,)) for i in range(a.clip_clients)]
    smp = threading.Thread(target=sampler)
    smp.start()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.time() - t_start
    time.sleep(2)  # let the server free what the last requests held
    after = rss_kb(pid) if pid else None
    stop.set()
    smp.join()

    lat = stats["lat"]
    peak = max((v for _, v in rss["samples"]), default=None)
    print("\n== load test: %d photo requests from %d clients, %d clips from %d clients, %.1f s" %
          (stats["done"], a.clients, stats["clips_done"], a.clip_clients, elapsed))
    print("photo statuses: %s" % json.dumps(dict(sorted(stats["status"].items()))))
    print("clip statuses (posts and polls): %s" % json.dumps(dict(sorted(stats["clip_status"].items()))))
    print("connection errors: %d%s" % (len(stats["errors"]), (" e.g. " + stats["errors"][0]) if stats["errors"] else ""))
    print("wrong answers: %d (largest P(fake) difference from the reference %.2g)" % (len(stats["wrong"]), stats["max_dp"]))
    for w in stats["wrong"][:10]:
        print("  wrong: %s %s got %s want %s" % w)
    print("photo latency (200s): p50 %.0f ms, p99 %.0f ms, max %.0f ms" %
          (pct(lat, 0.5) * 1e3, pct(lat, 0.99) * 1e3, max(lat, default=float("nan")) * 1e3))
    if stats["clip_lat"]:
        print("clip time to result: p50 %.1f s, max %.1f s" % (pct(stats["clip_lat"], 0.5), max(stats["clip_lat"])))
    print("throughput: %.1f photo requests/s" % (stats["done"] / elapsed if elapsed else 0))
    ok = not stats["wrong"] and not stats["errors"] and set(stats["status"]) <= {200, 503}
    if pid:
        warm = rss["warm"]
        print("server RSS: after warm-up (%d requests) %s kB, peak %s kB, after the run %s kB%s" %
              (a.warmup, warm, peak, after,
               (" (%+.1f%%)" % (100.0 * (after - warm) / warm)) if warm and after else ""))
        if warm and after and abs(after - warm) > 0.10 * warm:
            ok = False
    print("targets met" if ok else "TARGETS NOT MET")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
