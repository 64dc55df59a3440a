#!/usr/bin/env python3
"""bench/hostile.py — hostile clients against `dfd serve` on loopback (issue 18).

Starts the server (build/dfd serve on 127.0.0.1, a free port, its access log kept) and
runs, one after the other:
  idle         a normal photo request's answer time on an idle server (median of N);
  slow         SLOW connections that upload a byte every few seconds, reopened when the
               server cuts them, while the same normal request is timed again: the ratio
               to an idle server's must stay within 2x. The idle server is a second
               `dfd serve` (the control) timed in turn with the attacked one, so that a
               busy machine (training runs, other builds) slows both alike;
  oversized    a Content-Length of 1 TB (413 before any body), and a chunked body that
               runs past --max-upload-mb (413);
  truncated    multipart bodies that stop mid-part, lack the closing boundary, or
               carry a boundary of 200 characters (400);
  names        path-like file names ("../../x", "/etc/passwd", NUL and newline escapes):
               answered normally, no file appears outside the server's temp folder;
  long         a 64 KiB header, 2,000 headers, a 64 KiB URL (refused, the server goes on);
  idle-conns   IDLE connections that send nothing (from 127.0.0.2-127.0.0.9 so that the
               per-address limit does not refuse them all): a normal request still answered;
then checks that the server let go of everything (no request in flight, no upload bytes
held, its temp folder empty) and that its log has a line for each cut connection.
Bounded in time; loopback only; standard library only.

  nice -n 19 python3 bench/hostile.py > hostile.log 2>&1

Exit status 0 when every check holds, else 1.
"""
import argparse
import http.client
import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid

import loopback
from loopback import free_port

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FAIL = []


def check(cond, what):
    print(("ok    " if cond else "FAIL  ") + what, flush=True)
    if not cond:
        FAIL.append(what)


def multipart(name, data, boundary=None):
    return loopback.multipart(name, data, boundary, ctype="image/jpeg")


def raw(port, data, src="127.0.0.1", timeout=30, read=True):
    """Sends bytes on a fresh connection; returns the status code (None if closed unanswered)."""
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout, source_address=(src, 0))
    try:
        s.sendall(data)
        if not read:
            return s
        buf = b""
        while b"\r\n" not in buf:
            chunk = s.recv(4096)
            if not chunk:
                break
            buf += chunk
        m = re.match(rb"HTTP/1\.[01] (\d+)", buf)
        return int(m.group(1)) if m else None
    except (ConnectionResetError, BrokenPipeError, socket.timeout):
        return None
    finally:
        if read:
            s.close()


def post(port, path, body, ctype, src="127.0.0.1", timeout=120):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout, source_address=(src, 0))
    try:
        c.request("POST", path, body=body, headers={"Content-Type": ctype})
        r = c.getresponse()
        return r.status, r.read()
    finally:
        c.close()


def get(port, path):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        c.request("GET", path)
        r = c.getresponse()
        return r.status, r.read()
    finally:
        c.close()


def metric(port, name):
    st, body = get(port, "/metrics")
    m = re.search(rb"^%s (\d+)" % name.encode(), body, re.M)
    return int(m.group(1)) if m else None


def timed_photo(port, photo, n, src="127.0.0.1"):
    ct, body = multipart("face.jpg", photo)
    times, statuses = [], []
    for _ in range(n):
        t0 = time.time()
        try:
            st, _ = post(port, "/predict_image", body, ct, src=src)
        except OSError as e:
            st = repr(e)
        times.append(time.time() - t0)
        statuses.append(st)
    return times, statuses


def start_server(dfd, tmp, log_path):
    port = free_port()
    logf = open(log_path, "w")
    proc = subprocess.Popen([dfd, "serve", "--host", "127.0.0.1", "--port", str(port), "--max-upload-mb", "8"],
                            stdout=logf, stderr=subprocess.STDOUT, env=dict(os.environ, TMPDIR=tmp))
    for _ in range(600):
        try:
            if get(port, "/v1/health")[0] == 200:
                break
        except OSError:
            pass
        time.sleep(0.5)
    return proc, port, logf


def paired(port, ctrl_port, photo, seconds=None, n=None):
    """Times the normal request on the server and the control in turn: (times, statuses, control times)."""
    t, st, ct = [], [], []
    end = time.time() + seconds if seconds else None
    while (end and time.time() < end) or (n and len(t) < n):
        a, b = timed_photo(port, photo, 1)
        c, _ = timed_photo(ctrl_port, photo, 1)
        t += a
        st += b
        ct += c
    return t, st, ct


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--dfd", default=os.path.join(ROOT, "build", "dfd"))
    ap.add_argument("--photo", default="/work/shared/data/utkface-real/100_0_0_20170112213500903.jpg")
    ap.add_argument("--slow", type=int, default=50, help="slow uploads held at once")
    ap.add_argument("--slow-seconds", type=float, default=60, help="how long the slow attack lasts")
    ap.add_argument("--byte-every", type=float, default=3.0, help="seconds between a slow client's bytes")
    ap.add_argument("--idle", type=int, default=400, help="idle connections")
    ap.add_argument("--n", type=int, default=15, help="timed normal requests per phase")
    a = ap.parse_args()
    photo = open(a.photo, "rb").read()

    tmp = tempfile.mkdtemp(prefix="dfd-hostile-")
    log_path = os.path.join(tmp, "server.log")
    # The upload limit is lowered so that an over-limit chunked body is quick to send.
    server, port, logf = start_server(a.dfd, tmp, log_path)
    # The control: a second, untouched server, timed in turn with the attacked one, so
    # that the ratio measures the attack and not what else the machine runs meanwhile.
    ctrl_tmp = tempfile.mkdtemp(prefix="dfd-hostile-control-")
    control, ctrl_port, ctrl_logf = start_server(a.dfd, ctrl_tmp, os.path.join(ctrl_tmp, "server.log"))
    print("hostile: server pid %d on port %d, temp %s; control server pid %d on port %d"
          % (server.pid, port, tmp, control.pid, ctrl_port), flush=True)
    try:
        run(a, port, ctrl_port, photo, tmp, log_path)
    finally:
        for proc, f in ((server, logf), (control, ctrl_logf)):
            proc.terminate()
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            f.close()
    leftovers = [os.path.join(d, f) for d, _, fs in os.walk(tmp) for f in fs if f != "server.log"]
    check(not leftovers, "after shutdown the temp folder holds nothing but the log (%d files)" % len(leftovers))
    print("\n%d checks failed" % len(FAIL) if FAIL else "\nall checks passed")
    for f in FAIL:
        print("  failed: " + f)
    return 1 if FAIL else 0


def run(a, port, ctrl_port, photo, tmp, log_path):
    # ---- idle baseline
    timed_photo(port, photo, 2)  # warm-up
    timed_photo(ctrl_port, photo, 2)
    idle_t, idle_st, idle_ct = paired(port, ctrl_port, photo, n=a.n)
    idle_med = statistics.median(idle_t)
    check(all(s == 200 for s in idle_st), "idle: %d normal requests answered 200" % a.n)
    print("idle: median %.0f ms, max %.0f ms (control server meanwhile: median %.0f ms): ratio %.2f"
          % (idle_med * 1e3, max(idle_t) * 1e3, statistics.median(idle_ct) * 1e3,
             idle_med / statistics.median(idle_ct)), flush=True)

    # ---- slow uploads: a byte every few seconds, reopened when cut
    stop = threading.Event()
    cut = {"n": 0, "opened": 0}
    lock = threading.Lock()

    def slow_client(i):
        while not stop.is_set():
            b = uuid.uuid4().hex
            head = ("POST /predict_image HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary=%s\r\n"
                    "Content-Length: 100000\r\n\r\n" % b).encode()
            try:
                s = raw(port, head, read=False, timeout=a.byte_every + 5)
            except OSError:
                time.sleep(1)
                continue
            with lock:
                cut["opened"] += 1
            try:
                while not stop.is_set():
                    s.sendall(b"-")
                    if stop.wait(a.byte_every):
                        break
                    # A cut connection shows as readable at EOF or as an error on send.
                    s.setblocking(False)
                    try:
                        if s.recv(4096) == b"":
                            raise ConnectionResetError
                    except BlockingIOError:
                        pass
                    s.setblocking(True)
            except OSError:
                with lock:
                    cut["n"] += 1
            s.close()

    threads = [threading.Thread(target=slow_client, args=(i,), daemon=True) for i in range(a.slow)]
    for t in threads:
        t.start()
    time.sleep(5)
    inflight = metric(port, "dfd_requests_in_flight")
    slow_t, slow_st, slow_ct = paired(port, ctrl_port, photo, seconds=a.slow_seconds)
    stop.set()
    for t in threads:
        t.join()
    slow_med, ctrl_med = statistics.median(slow_t), statistics.median(slow_ct)
    print("slow: %d slow uploads (%d connections opened, %d cut by the server), %s requests in flight at 5 s"
          % (a.slow, cut["opened"], cut["n"], inflight), flush=True)
    print("slow: normal request median %.0f ms, p90 %.0f ms over %d requests; the idle control server meanwhile"
          " %.0f ms: ratio %.2f (before the attack: server %.0f ms)"
          % (slow_med * 1e3, sorted(slow_t)[int(0.9 * len(slow_t))] * 1e3, len(slow_t), ctrl_med * 1e3,
             slow_med / ctrl_med, idle_med * 1e3), flush=True)
    check(all(s == 200 for s in slow_st), "slow: every normal request answered 200 during %d slow uploads" % a.slow)
    check(slow_med <= 2 * ctrl_med, "slow: normal answer time within 2x of an idle server's (%.2f)"
          % (slow_med / ctrl_med))
    check(cut["n"] > 0, "slow: the server cuts uploads that trickle (%d cut)" % cut["n"])

    # ---- oversized bodies
    st = raw(port, b"POST /v1/analyze HTTP/1.1\r\nHost: x\r\nContent-Type: application/octet-stream\r\n"
                   b"Content-Length: 1000000000000\r\n\r\n")
    check(st == 413, "oversized: Content-Length 1 TB answered 413 before the body (%s)" % st)
    s = raw(port, b"POST /v1/analyze HTTP/1.1\r\nHost: x\r\nContent-Type: application/octet-stream\r\n"
                  b"Transfer-Encoding: chunked\r\n\r\n", read=False)
    chunk = b"%x\r\n%s\r\n" % (1 << 20, b"\0" * (1 << 20))
    status = None
    try:
        for _ in range(12):
            s.sendall(chunk)
        s.sendall(b"0\r\n\r\n")
        buf = s.recv(4096)
        m = re.match(rb"HTTP/1\.[01] (\d+)", buf)
        status = int(m.group(1)) if m else None
    except OSError:
        status = "closed"
    s.close()
    check(status in (413, "closed"), "oversized: a chunked body past the limit answered 413 or cut (%s)" % status)

    # ---- truncated multipart
    ct, body = multipart("face.jpg", photo)
    b = ct.split("=", 1)[1]
    cases = {
        "stops mid-part": body[: len(body) // 2],
        "no closing boundary": body[: -len(b) - 6],
        "no part at all": b"--" + b.encode() + b"\r\n",
    }
    for what, data in cases.items():
        st = raw(port, b"POST /v1/analyze HTTP/1.1\r\nHost: x\r\nContent-Type: %s\r\nContent-Length: %d\r\n\r\n"
                 % (ct.encode(), len(data)) + data)
        check(st == 400, "truncated: %s answered 400 (%s)" % (what, st))
    long_b = "b" * 200
    ct2, body2 = multipart("face.jpg", photo, boundary=long_b)
    st, _ = post(port, "/v1/analyze", body2, ct2)
    check(st == 400, "truncated: a 200-character boundary answered 400 (%s)" % st)
    # A body announced longer than sent: the client then goes quiet; the server times it out.

    # ---- path-like file names
    before = set(os.listdir("/tmp"))
    for name in ("../../../../tmp/dfd-hostile-escape.jpg", "/etc/passwd", "a\\..\\..\\b.jpg", "x%00.jpg",
                 "." * 300):
        ct, body = multipart(name, photo)
        st, out = post(port, "/v1/analyze", body, ct)
        check(st == 200, "names: file name %r answered 200" % name[:40])
    check(not os.path.exists("/tmp/dfd-hostile-escape.jpg") and set(os.listdir("/tmp")) - before <= set(),
          "names: nothing written outside the server's temp folder")

    # ---- long headers and URLs
    st = raw(port, b"GET /v1/health HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 65536 + b"\r\n\r\n")
    check(st in (431, 413, 400, None), "long: a 64 KiB header refused (%s)" % st)
    st = raw(port, b"GET /v1/health HTTP/1.1\r\nHost: x\r\n" + b"".join(b"X-%d: y\r\n" % i for i in range(2000))
             + b"\r\n")
    check(st in (431, 413, 400, None), "long: 2,000 headers refused (%s)" % st)
    st = raw(port, b"GET /" + b"a" * 65536 + b" HTTP/1.1\r\nHost: x\r\n\r\n")
    check(st in (414, 404, 400, None), "long: a 64 KiB URL refused (%s)" % st)
    st, _ = get(port, "/v1/health")
    check(st == 200, "long: the server still answers afterwards")

    # ---- many idle connections
    idle = []
    for i in range(a.idle):
        src = "127.0.0.%d" % (2 + i % 8)
        try:
            idle.append(socket.create_connection(("127.0.0.1", port), timeout=5, source_address=(src, 0)))
        except OSError:
            break
    time.sleep(1)
    t, st, ct = paired(port, ctrl_port, photo, n=5)
    check(all(s == 200 for s in st), "idle-conns: %d idle connections, normal requests still answered (%.0f ms;"
          " control %.0f ms)" % (len(idle), statistics.median(t) * 1e3, statistics.median(ct) * 1e3))
    for s in idle:
        s.close()

    # ---- the server let go of everything
    deadline = time.time() + 60
    while time.time() < deadline:
        held, infl = metric(port, "dfd_upload_bytes_held"), metric(port, "dfd_requests_in_flight")
        files = [f for d, _, fs in os.walk(tmp) for f in fs if f not in ("server.log", "lock")]
        if held == 0 and infl is not None and infl <= 1 and not files:
            break
        time.sleep(1)
    check(held == 0, "freed: no upload bytes held (%s)" % held)
    check(infl is not None and infl <= 1, "freed: no request in flight but /metrics itself (%s)" % infl)
    check(not files, "freed: the server's temp folder holds no upload (%d files)" % len(files))
    log = open(log_path).read()
    n_slow = len(re.findall(r"closed: upload too slow", log))
    check(n_slow > 0 and n_slow >= cut["n"] * 0.9,
          "logged: %d 'upload too slow' lines for %d cuts seen by clients" % (n_slow, cut["n"]))
    check(" 413 " in log, "logged: the 413s")


if __name__ == "__main__":
    sys.exit(main())
