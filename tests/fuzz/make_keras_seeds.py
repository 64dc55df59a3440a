#!/usr/bin/env python3
"""Writes the seed recipes of tests/fuzz/fuzz_keras.c into tests/fuzz/corpus/keras/.

A recipe is not a Keras file but the description fuzz_keras turns into one (its header
comment gives the layout). The seeds describe models that pair with the harness's graph
(conv2d 1x1 3->2, batch_normalization, global_average_pooling2d, dense 2->1) in each
container, and a few that break one rule each, so the fuzzer starts from inputs that
reach the weight reads as well as each refusal. Run once; the files are committed."""
import json
import os
import struct

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus", "keras")

F32, F64, I32, STR = 0, 1, 2, 3
ZEROS, RAMP, NAN = 0, 1, 2


def s8(text):
    b = text.encode()
    assert len(b) < 256
    return bytes([len(b)]) + b


def s16(text):
    b = text.encode()
    return struct.pack("<H", len(b)) + b


def weight(name, shape, dtype=F32, fill=RAMP):
    return s8(name) + bytes([dtype, len(shape)]) + bytes(shape) + bytes([fill])


def recipe(mode, flags, config, meta, layers):
    out = bytes([mode, flags]) + s16(config) + s16(meta) + bytes([len(layers)])
    for name, weights in layers:
        out += s8(name) + bytes([len(weights)]) + b"".join(weights)
    return out


def layer_cfg(cls, name, **cfg):
    cfg["name"] = name
    return {"class_name": cls, "config": cfg, "name": name}


CFG = {
    "class_name": "Functional",
    "config": {
        "name": "model",
        "layers": [
            layer_cfg("InputLayer", "input_1", batch_input_shape=[None, 4, 4, 3]),
            layer_cfg("Conv2D", "conv2d", strides=[1, 1], padding="same", dilation_rate=[1, 1], activation="linear"),
            layer_cfg("BatchNormalization", "batch_normalization", epsilon=0.001),
            layer_cfg("GlobalAveragePooling2D", "global_average_pooling2d"),
            layer_cfg("Dense", "dense", activation="sigmoid", units=1),
        ],
    },
}
H5_LAYERS = [
    ("input_1", []),
    ("conv2d", [weight("conv2d/kernel:0", [1, 1, 3, 2]), weight("conv2d/bias:0", [2])]),
    ("batch_normalization", [weight("batch_normalization/" + k + ":0", [2])
                             for k in ("gamma", "beta", "moving_mean", "moving_variance")]),
    ("global_average_pooling2d", []),
    ("dense", [weight("dense/kernel:0", [2, 1]), weight("dense/bias:0", [1])]),
]
K3_LAYERS = [
    ("conv2d", [weight("vars/0", [1, 1, 3, 2]), weight("vars/1", [2])]),
    ("batch_normalization", [weight("vars/%d" % i, [2]) for i in range(4)]),
    ("dense", [weight("vars/0", [2, 1]), weight("vars/1", [1])]),
]


def nested_cfg():
    inner = dict(CFG)
    inner = {"class_name": "Functional", "config": {"name": "inner", "layers": CFG["config"]["layers"][:4]},
             "name": "inner"}
    return {"class_name": "Functional", "config": {"name": "outer", "layers": [
        inner, layer_cfg("Dense", "dense", activation="sigmoid")]}}


def main():
    os.makedirs(OUT, exist_ok=True)
    cfg = json.dumps(CFG)
    meta = json.dumps({"keras_version": "3.3.3", "date_saved": "2024-05-01@12:00:00"})
    seeds = {
        "h5-model": recipe(0, 2, cfg, "", H5_LAYERS),
        "h5-model-vlen-chunked": recipe(0, 1 | 2 | 4, cfg, "", H5_LAYERS),
        "h5-weights-only": recipe(1, 0, "", "", H5_LAYERS),
        "h5-wrong-shape": recipe(0, 0, cfg, "", H5_LAYERS[:4] + [
            ("dense", [weight("dense/kernel:0", [3, 1]), weight("dense/bias:0", [1])])]),
        "h5-nan": recipe(0, 0, cfg, "", H5_LAYERS[:4] + [
            ("dense", [weight("dense/kernel:0", [2, 1], fill=NAN), weight("dense/bias:0", [1])])]),
        "h5-int": recipe(0, 0, cfg, "", H5_LAYERS[:4] + [
            ("dense", [weight("dense/kernel:0", [2, 1]), weight("dense/bias:0", [1], dtype=I32)])]),
        "h5-bad-config": recipe(0, 0, cfg.replace('"same"', '"valid"').replace("sigmoid", "tanh"), "", H5_LAYERS),
        "h5-soft-link-stray": recipe(0, 16 | 128, cfg, "", H5_LAYERS),
        "h5-stray": recipe(1, 128, "", "", H5_LAYERS),
        "h5-config-int": recipe(0, 8, "", "", H5_LAYERS),
        "h5-nested": recipe(0, 0, json.dumps(nested_cfg()), "", [
            ("inner", [w for _, ws in H5_LAYERS[1:4] for w in ws]), H5_LAYERS[4]]),
        "keras3": recipe(2, 0, cfg, meta, K3_LAYERS),
        "keras3-no-meta-npz": recipe(2, 32 | 64, cfg, meta, K3_LAYERS),
        "keras3-strings": recipe(2, 0, cfg, "[]", K3_LAYERS[:2] + [
            ("dense", [weight("vars/0", [2, 1], dtype=STR), weight("vars/1", [1]), weight("vars/2", [2], dtype=I32)])]),
        "raw-text": bytes([3]) + b"not a model\n",
    }
    for name, data in seeds.items():
        with open(os.path.join(OUT, name), "wb") as f:
            f.write(data)
    print("wrote %d seeds to %s" % (len(seeds), OUT))


if __name__ == "__main__":
    main()
