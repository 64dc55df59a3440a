#!/usr/bin/env python3
"""fuse-scores.py RUN_A RUN_B [W...] — issue 15's fusion lever, measured before it is built:
two manipulation models' `dfd eval` scores (RUN/eval-{val,timit,timit-clip}/scores.csv, as
scripts/train-manipulation-model.sh writes them) combined per item, and the AUC of each
combination on dfdc-faces validation, deepfaketimit frames and deepfaketimit clips.

Combinations: the weighted mean of the two logits (w * A + (1 - w) * B, for each W given;
0.5 by default), and the larger of the two logits after standardising each by its mean and
spread on the dfdc-faces validation reals (fires when either model is unusually sure).
AUC needs no threshold; a second table puts each combination's threshold where a model's
would be put, on the dfdc-faces validation scores alone (at their equal error rate, and at
3% of their reals), and reports at it the share of deepfaketimit's real frames, UTKFace's
held-out half and the FFHQ test part judged FAKE and of deepfaketimit's fakes caught
(RUN/eval-{utk,ffhq}/scores.csv where present)."""
import csv
import math
import os
import statistics
import sys
from bisect import bisect_left, bisect_right


def load(path):
    with open(path, newline="") as f:
        return {r["name"]: (r["label"] == "fake", float(r["p_fake"])) for r in csv.DictReader(f)}


def logit(p):
    p = min(max(p, 1e-6), 1 - 1e-6)
    return math.log(p / (1 - p))


def auc(labels, scores):
    neg = sorted(s for y, s in zip(labels, scores) if not y)
    pos = [s for y, s in zip(labels, scores) if y]
    ties = lambda s: bisect_right(neg, s) - bisect_left(neg, s)
    return sum(bisect_left(neg, s) + 0.5 * ties(s) for s in pos) / (len(pos) * len(neg))


def eer_threshold(labels, scores):
    """The threshold where the false-positive rate meets the miss rate (scores >= t: fake)."""
    best = None
    for t in sorted(set(scores)):
        fpr = sum(1 for y, v in zip(labels, scores) if not y and v >= t) / labels.count(False)
        fnr = sum(1 for y, v in zip(labels, scores) if y and v < t) / labels.count(True)
        if best is None or abs(fpr - fnr) < best[0]:
            best = (abs(fpr - fnr), t)
    return best[1]


def fpr_threshold(labels, scores, rate):
    """The lowest threshold that flags at most `rate` of the reals."""
    reals = sorted((v for y, v in zip(labels, scores) if not y), reverse=True)
    k = int(rate * len(reals))
    return reals[k] + 1e-9 if k < len(reals) else min(scores)


def paired(a, b, part):
    x, y = load(f"{a}/eval-{part}/scores.csv"), load(f"{b}/eval-{part}/scores.csv")
    keys = [k for k in x if k in y]
    if not keys:
        sys.exit(f"fuse-scores: {a} and {b} share no items in eval-{part}")
    return [x[k][0] for k in keys], [logit(x[k][1]) for k in keys], [logit(y[k][1]) for k in keys]


def main():
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    a, b = sys.argv[1], sys.argv[2]
    weights = [float(w) for w in sys.argv[3:]] or [0.5]
    lab, la, lb = paired(a, b, "val")
    real_a = [s for y, s in zip(lab, la) if not y]
    real_b = [s for y, s in zip(lab, lb) if not y]
    ma, sa = statistics.mean(real_a), statistics.pstdev(real_a)
    mb, sb = statistics.mean(real_b), statistics.pstdev(real_b)
    parts = [("val", "dfdc val AUC"), ("timit", "timit frame AUC"), ("timit-clip", "timit clip AUC")]
    print(f"A = {a}, B = {b}")
    print("| combination | " + " | ".join(t for _, t in parts) + " |")
    print("|---|" + "---|" * len(parts))
    rows = {"A alone": [], "B alone": [], "max of standardised logits": []}
    for w in weights:
        rows[f"logit mean, w = {w:g}"] = []
    for part, _ in parts:
        lab, la, lb = paired(a, b, part)
        rows["A alone"].append(auc(lab, la))
        rows["B alone"].append(auc(lab, lb))
        for w in weights:
            rows[f"logit mean, w = {w:g}"].append(auc(lab, [w * p + (1 - w) * q for p, q in zip(la, lb)]))
        rows["max of standardised logits"].append(
            auc(lab, [max((p - ma) / sa, (q - mb) / sb) for p, q in zip(la, lb)]))
    for name, v in rows.items():
        print(f"| {name} | " + " | ".join(f"{x:.3f}" for x in v) + " |")

    # The same combinations at thresholds chosen on the dfdc-faces validation scores.
    def combos(la_, lb_):
        out = {"A alone": la_, "B alone": lb_,
               "max of standardised logits": [max((p - ma) / sa, (q - mb) / sb) for p, q in zip(la_, lb_)]}
        for w in weights:
            out[f"logit mean, w = {w:g}"] = [w * p + (1 - w) * q for p, q in zip(la_, lb_)]
        return out
    have = [p for p in ("timit", "utk", "ffhq")
            if all(os.path.exists(f"{r}/eval-{p}/scores.csv") for r in (a, b))]
    sets = {p: paired(a, b, p) for p in have}
    vlab, vla, vlb = paired(a, b, "val")
    vc = combos(vla, vlb)
    print()
    print("| combination | threshold at | dfdc val reals flagged | dfdc val fakes caught | "
          "timit reals flagged | timit fakes caught | UTKFace flagged | FFHQ flagged |")
    print("|---|---|---|---|---|---|---|---|")
    for name, vs in vc.items():
        for how, t in (("EER", eer_threshold(vlab, vs)), ("3% of reals", fpr_threshold(vlab, vs, 0.03))):
            def rate(lab, sc, fake):
                sel = [v for y, v in zip(lab, sc) if y == fake]
                return f"{100 * sum(v >= t for v in sel) / len(sel):.1f}%" if sel else "–"
            cells = [rate(vlab, vs, False), rate(vlab, vs, True)]
            for p, fakes in (("timit", (False, True)), ("utk", (False,)), ("ffhq", (False,))):
                if p in sets:
                    lab, la_, lb_ = sets[p]
                    sc = combos(la_, lb_)[name]
                    cells += [rate(lab, sc, f) for f in fakes]
                else:
                    cells += ["–"] * len(fakes)
            print(f"| {name} | {how} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
