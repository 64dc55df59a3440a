#!/usr/bin/env python3
"""interpolate-weights.py A B ALPHA OUT — a dfd model file whose every tensor is
(1 - ALPHA) * A + ALPHA * B, stored as F32, with A's metadata (threshold included: choose a
new one with `dfd calibrate` or read the EER threshold off `dfd eval`).

Weight-space interpolation between a model and its own fine-tuned continuation (WiSE-FT,
Wortsman et al., CVPR 2022) can keep more of the first model's robustness than either end;
models/README.md measures it for the manipulation detector. A and B must share every tensor
name and shape; interpolating two independent runs rarely works (the card shows that too).
Plain standard library: no numpy needed."""
import json, struct, sys
from array import array


def load(path):
    raw = open(path, 'rb').read()
    n = struct.unpack('<Q', raw[:8])[0]
    header = json.loads(raw[8:8 + n])
    data = raw[8 + n:]
    meta = header.pop('__metadata__', {})
    tensors = {}
    for name, t in header.items():
        b, e = t['data_offsets']
        if t['dtype'] == 'F32':
            v = array('f'); v.frombytes(data[b:e])
        elif t['dtype'] == 'BF16':
            h = array('H'); h.frombytes(data[b:e])
            u = array('I', (x << 16 for x in h))
            v = array('f'); v.frombytes(u.tobytes())
        else:
            sys.exit(f'{path}: tensor {name} is {t["dtype"]}, not F32 or BF16')
        tensors[name] = (t['shape'], v)
    return tensors, meta


def main(argv):
    if len(argv) != 5:
        sys.exit(__doc__)
    a, meta = load(argv[1])
    b, _ = load(argv[2])
    alpha = float(argv[3])
    if a.keys() != b.keys() or any(a[k][0] != b[k][0] for k in a):
        sys.exit('the two files do not hold the same tensors')
    header, chunks, off = {}, [], 0
    for name in sorted(a):
        shape, va = a[name]
        vb = b[name][1]
        v = array('f', ((1 - alpha) * x + alpha * y for x, y in zip(va, vb)))
        buf = v.tobytes()
        header[name] = {'dtype': 'F32', 'shape': shape, 'data_offsets': [off, off + len(buf)]}
        chunks.append(buf)
        off += len(buf)
    header['__metadata__'] = meta
    hj = json.dumps(header, separators=(',', ':')).encode()
    hj += b' ' * ((8 - len(hj) % 8) % 8)
    with open(argv[4], 'wb') as f:
        f.write(struct.pack('<Q', len(hj)))
        f.write(hj)
        for c in chunks:
            f.write(c)


if __name__ == '__main__':
    main(sys.argv)
