#!/usr/bin/env python3
"""compare_pytorch.py — dfd's oneDNN backend against PyTorch on Keras's Xception.

Builds keras.applications.Xception(include_top=False) at 299x299 in PyTorch (same layers,
same channel counts, batch-norm epsilon 1e-3, 'same' paddings as PyTorch paddings),
channels-last, traced and frozen with TorchScript (freezing folds batch-norm into the
convolutions, as dfd does; fp32 is also optimised for inference, which puts its
convolutions on oneDNN), and times it at batch 8 in fp32 and under bf16 autocast.
It runs `dfd bench --json --arch xception` for the same precision right after each
PyTorch measurement, several rounds alternately, because the machine is shared and noisy:
only ratios taken side by side mean something. Prints each round and the median ratio
dfd / PyTorch (below 1: dfd is faster), of wall time and of processor time (all threads),
the latter being less sensitive to other programs running on the machine.

Needs python3-torch (Debian: apt-get install python3-torch); not needed to build or test dfd.

    /usr/bin/python3 bench/compare_pytorch.py [--dfd build/dfd] [--rounds 3] [--iters 10]
                                              [--batch 8] [--threads 2] [--precision fp32,bf16]
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time

try:
    import torch
    import torch.nn as nn
except ImportError:
    sys.exit("compare_pytorch.py needs PyTorch (Debian: apt-get install python3-torch; run it with /usr/bin/python3)")


def conv_bn(cin, cout, k, stride=1, padding=0):
    return [nn.Conv2d(cin, cout, k, stride, padding, bias=False), nn.BatchNorm2d(cout, eps=1e-3)]


class SepConv(nn.Sequential):
    """Keras SeparableConv2D(use_bias=False): depthwise 3x3 'same', then pointwise 1x1."""

    def __init__(self, cin, cout):
        super().__init__(nn.Conv2d(cin, cin, 3, 1, 1, groups=cin, bias=False), nn.Conv2d(cin, cout, 1, bias=False))


class Block(nn.Module):
    """An Xception block with a residual: [relu] sep-bn [relu sep-bn ...] [maxpool] + shortcut."""

    def __init__(self, cin, chans, first_relu, pool, shortcut):
        super().__init__()
        layers, c = [], cin
        for i, co in enumerate(chans):
            if i > 0 or first_relu:
                layers.append(nn.ReLU())
            layers += [SepConv(c, co), nn.BatchNorm2d(co, eps=1e-3)]
            c = co
        if pool:
            layers.append(nn.MaxPool2d(3, 2, 1))
        self.body = nn.Sequential(*layers)
        self.shortcut = nn.Sequential(*conv_bn(cin, c, 1, 2)) if shortcut else None

    def forward(self, x):
        return self.body(x) + (self.shortcut(x) if self.shortcut is not None else x)


class Xception(nn.Module):
    """keras.applications.Xception(include_top=False): {N,3,299,299} -> {N,2048,10,10}."""

    def __init__(self):
        super().__init__()
        blocks = [
            *conv_bn(3, 32, 3, 2), nn.ReLU(), *conv_bn(32, 64, 3), nn.ReLU(),
            Block(64, [128, 128], False, True, True),
            Block(128, [256, 256], True, True, True),
            Block(256, [728, 728], True, True, True),
        ]
        blocks += [Block(728, [728, 728, 728], True, False, False) for _ in range(8)]
        blocks += [
            Block(728, [728, 1024], True, True, True),
            SepConv(1024, 1536), nn.BatchNorm2d(1536, eps=1e-3), nn.ReLU(),
            SepConv(1536, 2048), nn.BatchNorm2d(2048, eps=1e-3), nn.ReLU(),
        ]
        self.net = nn.Sequential(*blocks)

    def forward(self, x):
        return self.net(x)


def randomize(model):
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.1)
                m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)


def trace(model, x, precision):
    """TorchScript, traced and frozen (freezing folds batch-norm into the convolutions); fp32
    also through torch.jit.optimize_for_inference, which runs the convolutions on oneDNN
    (without it Debian's PyTorch 1.13 runs channels-last fp32 convolutions through its
    generic BLAS, ~50x slower)."""
    # Tracing under autocast needs its weight cache off (else the trace check fails).
    with torch.no_grad(), torch.cpu.amp.autocast(enabled=precision == "bf16", dtype=torch.bfloat16,
                                                 cache_enabled=False):
        traced = torch.jit.freeze(torch.jit.trace(model, x, check_trace=False))
        if precision == "fp32":
            traced = torch.jit.optimize_for_inference(traced)
        for _ in range(3):  # warm-up (TorchScript profiles and optimises in the first runs)
            traced(x)
    return traced


def time_torch(traced, x, precision, iters):
    with torch.no_grad(), torch.cpu.amp.autocast(enabled=precision == "bf16", dtype=torch.bfloat16,
                                                 cache_enabled=False):
        traced(x)  # warm-up after the other program ran
        times, cpu = [], []
        for _ in range(iters):
            t0, c0 = time.perf_counter(), time.process_time()
            traced(x)
            times.append(time.perf_counter() - t0)
            cpu.append(time.process_time() - c0)
    return 1000.0 * statistics.median(times) / x.shape[0], 1000.0 * statistics.median(cpu) / x.shape[0]


def time_dfd(dfd, precision, batch, iters, threads):
    cmd = [dfd, "bench", "--json", "--arch", "xception", "--precision", precision, "--batch", str(batch),
           "--iters", str(iters), "--threads", str(threads), "--mode", "infer"]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    rows = [r for r in json.loads(out) if r.get("mode", "infer") == "infer" and r["precision"] == precision]
    if not rows:
        sys.exit("dfd bench gave no %s row: %s" % (precision, out))
    return rows[0]["ms_per_image"], rows[0].get("cpu_ms_per_image", float("nan"))


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--dfd", default=os.path.join(here, "..", "build", "dfd"))
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--iters", type=int, default=10)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--precision", default="fp32,bf16")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    model = Xception().eval().to(memory_format=torch.channels_last)
    randomize(model)
    x = torch.randn(a.batch, 3, 299, 299).to(memory_format=torch.channels_last)
    precs = a.precision.split(",")
    print("Xception 299x299, batch %d, %d threads, PyTorch %s (oneDNN %s) vs %s" %
          (a.batch, a.threads, torch.__version__, torch.backends.mkldnn.is_available() and "on" or "off", a.dfd))
    traced = {p: trace(model, x, p) for p in precs}
    ratios = {p: [] for p in precs}
    cratios = {p: [] for p in precs}
    for r in range(a.rounds):
        for p in precs:
            t, tc = time_torch(traced[p], x, p, a.iters)
            d, dc = time_dfd(a.dfd, p, a.batch, a.iters, a.threads)
            ratios[p].append(d / t)
            cratios[p].append(dc / tc)
            print("round %d %-4s  PyTorch %8.2f ms/image (CPU %8.2f)   dfd %8.2f ms/image (CPU %8.2f)   "
                  "dfd/PyTorch %.2f (CPU %.2f)" % (r + 1, p, t, tc, d, dc, d / t, dc / tc), flush=True)
    for p in precs:
        print("median dfd/PyTorch %-4s: %.2f wall, %.2f CPU time" %
              (p, statistics.median(ratios[p]), statistics.median(cratios[p])))


if __name__ == "__main__":
    main()
