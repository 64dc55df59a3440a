#!/usr/bin/python3
"""An independent reference for `dfd import keras`: Keras's Xception and the original
system's heads written in PyTorch (from keras/src/applications/xception.py and the
original's training scripts, not from dfd's code), with the weights read straight from a
Keras .h5 or .keras file by h5py.

    xception_torch.py --model MODEL.h5|MODEL.keras --input INPUT.f32 --size S [--frames T]

INPUT.f32 holds the model input as raw little-endian float32 in Keras's layout (H, W, 3)
or, for a video model (--frames T > 0), (T, H, W, 3), values already normalised. Prints
"logit L p_real P": the last Dense layer before its sigmoid, and the sigmoid (P(real)
for the original's models). Computes in float64.

Only Debian packages: python3-torch, python3-h5py, python3-numpy (not needed by dfd's CI;
tests/test_io_keras.c runs this where they are installed).
"""
import argparse
import io
import json
import re
import sys
import zipfile

import h5py
import numpy as np
import torch
import torch.nn.functional as F

# Variable order of a Keras 3 layer's vars/0, vars/1, ... (its weights in creation order).
KERAS3_VARS = {
    "Conv2D": ["kernel", "bias"],
    "SeparableConv2D": ["depthwise_kernel", "pointwise_kernel", "bias"],
    "BatchNormalization": ["gamma", "beta", "moving_mean", "moving_variance"],
    "Dense": ["kernel", "bias"],
    "LSTM": ["kernel", "recurrent_kernel", "bias"],
}


def snake_case(name):
    name = re.sub(r"\W+", "", name)
    name = re.sub("(.)([A-Z][a-z]+)", r"\1_\2", name)
    return re.sub("([a-z])([A-Z])", r"\1_\2", name).lower()


def leaves(node, out):
    """Leaf layers of a serialised Keras model, depth first: (name, class_name)."""
    cfg = node.get("config")
    if isinstance(cfg, list):
        children = cfg
    elif isinstance(cfg, dict) and isinstance(cfg.get("layers"), list):
        children = cfg["layers"]
    elif isinstance(cfg, dict) and isinstance(cfg.get("layer"), dict):
        return leaves(cfg["layer"], out)
    else:
        out.append((cfg.get("name") if isinstance(cfg, dict) else node.get("name"), node["class_name"]))
        return out
    for c in children:
        leaves(c, out)
    return out


def read_h5(path):
    """Keras 2 .h5: {layer name: {kind: array}} and the config."""
    f = h5py.File(path, "r")
    config = json.loads(f.attrs["model_config"])
    root = f["model_weights"] if "model_weights" in f else f

    def names(group, key):
        if key in group.attrs:
            return [n.decode() if isinstance(n, bytes) else n for n in group.attrs[key]]
        out, i = [], 0
        while f"{key}{i}" in group.attrs:
            out += [n.decode() if isinstance(n, bytes) else n for n in group.attrs[f"{key}{i}"]]
            i += 1
        return out

    weights = {}
    for lname in names(root, "layer_names"):
        g = root[lname]
        wnames = names(g, "weight_names")
        nested = [c for c in config["config"]["layers"] if c["config"]["name"] == lname and
                  ("layers" in c["config"] or "layer" in c["config"])]
        for wn in wnames:
            parts = wn.split("/")
            kind = parts[-1].split(":")[0]
            if nested:
                owner = parts[-2]
                if owner.endswith("_cell") and len(parts) >= 3:
                    owner = parts[-3]
            else:
                owner = lname
            weights.setdefault(owner, {})[kind] = np.array(g[wn], dtype=np.float64)
    return weights, config


def read_keras3(path):
    """Keras 3 .keras: config.json walked as saving_lib walks the model."""
    z = zipfile.ZipFile(path)
    config = json.loads(z.read("config.json"))
    f = h5py.File(io.BytesIO(z.read("model.weights.h5")), "r")
    weights = {}

    def walk(node, p):
        cfg = node["config"]
        if isinstance(cfg.get("layers"), list):
            counts = {}
            for c in cfg["layers"]:
                s = snake_case(c["class_name"])
                if s in counts:
                    counts[s] += 1
                    key = f"{s}_{counts[s]}"
                else:
                    counts[s] = 0
                    key = s
                walk(c, f"{p}/layers/{key}" if p else f"layers/{key}")
        elif isinstance(cfg.get("layer"), dict):
            walk(cfg["layer"], f"{p}/layer")
        elif node["class_name"] in KERAS3_VARS:
            vg = f[p]["cell"]["vars"] if node["class_name"] == "LSTM" else f[p]["vars"]
            arrays = [np.array(vg[str(i)], dtype=np.float64) for i in range(len(vg))]
            kinds = KERAS3_VARS[node["class_name"]]
            if node["class_name"] == "BatchNormalization":
                assert len(arrays) == 4
            weights[cfg["name"]] = dict(zip(kinds, arrays))

    walk(config, "")
    return weights, config


# ---- Keras operations in PyTorch (NCHW, float64) ----------------------------------------

def same_pad(x, k, s, value=0.0):
    """TensorFlow's 'same' padding: the extra row/column goes to the bottom/right."""
    h, w = x.shape[2], x.shape[3]
    ph = max((-(-h // s) - 1) * s + k - h, 0)
    pw = max((-(-w // s) - 1) * s + k - w, 0)
    return F.pad(x, (pw // 2, pw - pw // 2, ph // 2, ph - ph // 2), value=value)


def t(a):
    return torch.from_numpy(np.ascontiguousarray(a))


class Weights:
    def __init__(self, weights, order):
        self.w = weights
        # Layers Keras named automatically, per family, in the model's layer order.
        self.auto = {}
        for name, cls in order:
            m = re.fullmatch(r"(conv2d|batch_normalization|dense|lstm)(_\d+)?", name or "")
            if m and name in weights:
                self.auto.setdefault(m.group(1), []).append(name)
        self.used = set()

    def get(self, name):
        self.used.add(name)
        return self.w[name]

    def nth(self, family, i):
        return self.get(self.auto[family][i])


def conv(x, W, name, stride, padding):
    k = W.get(name)["kernel"]
    x = same_pad(x, k.shape[0], stride) if padding == "same" else x
    return F.conv2d(x, t(k.transpose(3, 2, 0, 1)), stride=stride)


def conv_w(x, w, stride, padding):
    k = w["kernel"]
    x = same_pad(x, k.shape[0], stride) if padding == "same" else x
    return F.conv2d(x, t(k.transpose(3, 2, 0, 1)), stride=stride)


def bn_w(x, w):
    g, b, m, v = (t(w[k]).view(1, -1, 1, 1) for k in ("gamma", "beta", "moving_mean", "moving_variance"))
    return (x - m) / torch.sqrt(v + 1e-3) * g + b


def sep(x, W, name):
    w = W.get(name)
    dk, pk = w["depthwise_kernel"], w["pointwise_kernel"]
    c = dk.shape[2]
    x = F.conv2d(same_pad(x, 3, 1), t(dk.transpose(2, 3, 0, 1)), groups=c)
    return F.conv2d(x, t(pk.transpose(3, 2, 0, 1)))


def maxpool(x):
    return F.max_pool2d(same_pad(x, 3, 2, value=-float("inf")), 3, 2)


def xception(x, W):
    """keras.applications.Xception(include_top=False), layer for layer."""
    x = F.relu(bn_w(conv(x, W, "block1_conv1", 2, "valid"), W.get("block1_conv1_bn")))
    x = F.relu(bn_w(conv(x, W, "block1_conv2", 1, "valid"), W.get("block1_conv2_bn")))
    shortcut = 0

    def down(x, block, pre_relu):
        nonlocal shortcut
        r = bn_w(conv_w(x, W.nth("conv2d", shortcut), 2, "same"), W.nth("batch_normalization", shortcut))
        shortcut += 1
        if pre_relu:
            x = F.relu(x)
        x = bn_w(sep(x, W, f"block{block}_sepconv1"), W.get(f"block{block}_sepconv1_bn"))
        x = F.relu(x)
        x = bn_w(sep(x, W, f"block{block}_sepconv2"), W.get(f"block{block}_sepconv2_bn"))
        return maxpool(x) + r

    x = down(x, 2, False)
    x = down(x, 3, True)
    x = down(x, 4, True)
    for block in range(5, 13):
        r = x
        for j in (1, 2, 3):
            x = bn_w(sep(F.relu(x), W, f"block{block}_sepconv{j}"), W.get(f"block{block}_sepconv{j}_bn"))
        x = x + r
    x = down(x, 13, True)
    x = F.relu(bn_w(sep(x, W, "block14_sepconv1"), W.get("block14_sepconv1_bn")))
    x = F.relu(bn_w(sep(x, W, "block14_sepconv2"), W.get("block14_sepconv2_bn")))
    return x


def dense(x, w):
    return x @ t(w["kernel"]) + t(w["bias"])


def lstm(seq, w, return_sequences):
    """Keras LSTM: gates i, f, c, o; sigmoid / tanh; zero initial state."""
    k, rk, b = t(w["kernel"]), t(w["recurrent_kernel"]), t(w["bias"])
    u = rk.shape[0]
    h = torch.zeros(seq.shape[0], u, dtype=torch.float64)
    c = torch.zeros_like(h)
    outs = []
    for step in range(seq.shape[1]):
        z = seq[:, step] @ k + h @ rk + b
        i, f, g, o = z[:, :u], z[:, u:2 * u], z[:, 2 * u:3 * u], z[:, 3 * u:]
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        h = torch.sigmoid(o) * torch.tanh(c)
        outs.append(h)
    return torch.stack(outs, 1) if return_sequences else h


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--input", required=True)
    ap.add_argument("--size", type=int, required=True)
    ap.add_argument("--frames", type=int, default=0)
    a = ap.parse_args()
    with open(a.model, "rb") as fh:
        magic = fh.read(4)
    weights, config = read_keras3(a.model) if magic[:2] == b"PK" else read_h5(a.model)
    W = Weights(weights, leaves(config, []))
    x = np.fromfile(a.input, dtype="<f4").astype(np.float64)
    s = a.size
    with torch.no_grad():
        if a.frames:
            x = t(x.reshape(a.frames, s, s, 3).transpose(0, 3, 1, 2))
            feats = xception(x, W).mean(dim=(2, 3)).unsqueeze(0)  # (1, T, 2048)
            h = lstm(feats, W.nth("lstm", 0), True)
            h = lstm(h, W.nth("lstm", 1), False)
            h = F.relu(dense(h, W.nth("dense", 0)))
            logit = dense(h, W.nth("dense", 1))
        else:
            x = t(x.reshape(1, s, s, 3).transpose(0, 3, 1, 2))
            f = xception(x, W).mean(dim=(2, 3))
            h = F.relu(dense(f, W.nth("dense", 0)))
            logit = dense(h, W.nth("dense", 1))
    unused = set(weights) - W.used
    if unused:
        print(f"weights not used by the reference: {sorted(unused)}", file=sys.stderr)
        return 1
    v = float(logit.reshape(-1)[0])
    print(f"logit {v:.8f} p_real {1.0 / (1.0 + np.exp(-v)):.8f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
