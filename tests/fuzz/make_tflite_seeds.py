#!/usr/bin/env python3
"""Writes the TFLite seeds of tests/fuzz/corpus/tflite: small one-subgraph models built
with a minimal flatbuffer writer (the same layout as tests/test_io_tflite.c's), covering
every operator the converter reads. Run from the repository root."""
import os
import struct


class FB:
    def __init__(self):
        self.b = bytearray()

    def alloc(self, n, align):
        while len(self.b) % align:
            self.b.append(0)
        p = len(self.b)
        self.b += bytes(n)
        return p

    def p16(self, p, v):
        self.b[p:p + 2] = struct.pack('<H', v & 0xffff)

    def p32(self, p, v):
        self.b[p:p + 4] = struct.pack('<I', v & 0xffffffff)

    def table(self, sz):
        nf = len(sz)
        vt = self.alloc(4 + 2 * nf, 2)
        off, offs = 4, []
        for z in sz:
            offs.append(off if z else 0)
            off += ((z + 3) & ~3) if z else 0
        t = self.alloc(off, 4)
        self.p16(vt, 4 + 2 * nf)
        self.p16(vt + 2, off)
        fields = []
        for i in range(nf):
            self.p16(vt + 4 + 2 * i, offs[i])
            fields.append(t + offs[i] if offs[i] else 0)
        self.p32(t, t - vt)
        return t, fields

    def ref(self, field, target):
        self.p32(field, target - field)

    def vec(self, n, elem, data=None):
        p = self.alloc(4 + n * elem + 1, 4)
        self.p32(p, n)
        if data:
            self.b[p + 4:p + 4 + len(data)] = data
        return p


def build(ts, ops, inp, out):
    f = FB()
    root = f.alloc(8, 4)
    f.b[4:8] = b'TFL3'
    model, mf = f.table([4, 4, 4, 0, 4])
    f.p32(root, model)
    f.p32(mf[0], 3)
    codes, idx = [], []
    for o in ops:
        if o['code'] not in codes:
            codes.append(o['code'])
        idx.append(codes.index(o['code']))
    cv = f.vec(len(codes), 4)
    f.ref(mf[1], cv)
    for k, c in enumerate(codes):
        t, cf = f.table([1, 0, 4, 4])
        f.b[cf[0]] = min(c, 127)
        f.p32(cf[2], 1)
        f.p32(cf[3], c)
        f.ref(cv + 4 + 4 * k, t)
    bv = f.vec(len(ts) + 1, 4)
    f.ref(mf[4], bv)
    for i in range(len(ts) + 1):
        has = i > 0 and ts[i - 1].get('data') is not None
        t, bf = f.table([4 if has else 0])
        f.ref(bv + 4 + 4 * i, t)
        if has:
            f.ref(bf[0], f.vec(len(ts[i - 1]['data']), 1, ts[i - 1]['data']))
    sv = f.vec(1, 4)
    f.ref(mf[2], sv)
    sg, sf = f.table([4, 4, 4, 4])
    f.ref(sv + 4, sg)
    f.ref(sf[1], f.vec(1, 4, struct.pack('<i', inp)))
    f.ref(sf[2], f.vec(1, 4, struct.pack('<i', out)))
    tv = f.vec(len(ts), 4)
    f.ref(sf[0], tv)
    for i, tt in enumerate(ts):
        t, tf = f.table([4, 1, 4, 4])
        f.ref(tv + 4 + 4 * i, t)
        sh = tt['shape']
        f.ref(tf[0], f.vec(len(sh), 4, struct.pack('<%di' % len(sh), *sh)))
        f.b[tf[1]] = tt.get('type', 0)
        f.p32(tf[2], i + 1 if tt.get('data') is not None else 0)
        nm = tt['name'].encode()
        f.ref(tf[3], f.vec(len(nm), 1, nm))
    ov = f.vec(len(ops), 4)
    f.ref(sf[3], ov)
    for i, o in enumerate(ops):
        opts, ot = o.get('opts', []), o.get('opt_type', 0)
        t, of = f.table([4, 4, 4, 1 if ot else 0, 4 if ot else 0])
        f.ref(ov + 4 + 4 * i, t)
        f.p32(of[0], idx[i])
        f.ref(of[1], f.vec(len(o['in']), 4, struct.pack('<%di' % len(o['in']), *o['in'])))
        f.ref(of[2], f.vec(len(o['out']), 4, struct.pack('<%di' % len(o['out']), *o['out'])))
        if ot:
            f.b[of[3]] = ot
            nf = max(k for k, _, _ in opts) + 1
            psz = [0] * nf
            for k, z, _ in opts:
                psz[k] = z
            pt, pf = f.table(psz)
            f.ref(of[4], pt)
            for k, z, v in opts:
                if z == 1:
                    f.b[pf[k]] = v & 0xff
                else:
                    f.p32(pf[k], v)
    return bytes(f.b)


F32, F16, I32 = 0, 1, 2
ADD, CONCAT, CONV, DW, DEQ, MAXPOOL, RELU, RESHAPE, RESIZE, PAD = 0, 2, 3, 4, 6, 17, 19, 22, 23, 34


def f32(n):
    return struct.pack('<%df' % n, *[((i * 7) % 5 - 2) * 0.25 for i in range(n)])


def main():
    d = 'tests/fuzz/corpus/tflite'
    os.makedirs(d, exist_ok=True)
    # input 1x4x4x2 -> CONV 3x3 SAME (weights fp16 via DEQUANTIZE) -> DEPTHWISE 3x3 -> ADD
    # -> MAX_POOL 2x2 -> PAD -> RELU -> RESIZE_BILINEAR -> RESHAPE -> CONCAT
    ts = [
        {'name': 'input', 'shape': [1, 4, 4, 2]},
        {'name': 'w16', 'shape': [2, 3, 3, 2], 'type': F16, 'data': b'\x00\x3c' * 36},
        {'name': 'w', 'shape': [2, 3, 3, 2]},
        {'name': 'b', 'shape': [2], 'data': f32(2)},
        {'name': 'conv', 'shape': [1, 4, 4, 2]},
        {'name': 'dw_w', 'shape': [1, 3, 3, 2], 'data': f32(18)},
        {'name': 'dw', 'shape': [1, 4, 4, 2]},
        {'name': 'add', 'shape': [1, 4, 4, 2]},
        {'name': 'pool', 'shape': [1, 2, 2, 2]},
        {'name': 'pads', 'shape': [4, 2], 'type': I32, 'data': struct.pack('<8i', 0, 0, 1, 1, 1, 1, 0, 0)},
        {'name': 'pad', 'shape': [1, 4, 4, 2]},
        {'name': 'relu', 'shape': [1, 4, 4, 2]},
        {'name': 'size', 'shape': [2], 'type': I32, 'data': struct.pack('<2i', 8, 8)},
        {'name': 'resize', 'shape': [1, 8, 8, 2]},
        {'name': 'flat', 'shape': [1, 128]},
        {'name': 'cat', 'shape': [1, 256]},
    ]
    ops = [
        {'code': DEQ, 'in': [1], 'out': [2]},
        {'code': CONV, 'in': [0, 2, 3], 'out': [4], 'opt_type': 1,
         'opts': [(0, 1, 0), (1, 4, 1), (2, 4, 1), (3, 1, 1), (4, 4, 1), (5, 4, 1)]},
        {'code': DW, 'in': [4, 5], 'out': [6], 'opt_type': 2,
         'opts': [(0, 1, 0), (1, 4, 1), (2, 4, 1), (3, 4, 1), (4, 1, 3), (5, 4, 1), (6, 4, 1)]},
        {'code': ADD, 'in': [4, 6], 'out': [7], 'opt_type': 11, 'opts': [(0, 1, 0)]},
        {'code': MAXPOOL, 'in': [7], 'out': [8], 'opt_type': 5,
         'opts': [(0, 1, 1), (1, 4, 2), (2, 4, 2), (3, 4, 2), (4, 4, 2), (5, 1, 0)]},
        {'code': PAD, 'in': [8, 9], 'out': [10]},
        {'code': RELU, 'in': [10], 'out': [11]},
        {'code': RESIZE, 'in': [11, 12], 'out': [13], 'opt_type': 15, 'opts': [(2, 1, 0), (3, 1, 1)]},
        {'code': RESHAPE, 'in': [13], 'out': [14]},
        {'code': CONCAT, 'in': [14, 14], 'out': [15], 'opt_type': 10, 'opts': [(0, 4, 1), (1, 1, 0)]},
    ]
    open(os.path.join(d, 'all_ops.tflite'), 'wb').write(build(ts, ops, 0, 15))
    ts2 = [{'name': 'in', 'shape': [1, 5, 5, 1]},
           {'name': 'w', 'shape': [1, 2, 2, 1], 'data': f32(4)},
           {'name': 'out', 'shape': [1, 2, 2, 1]}]
    ops2 = [{'code': CONV, 'in': [0, 1], 'out': [2], 'opt_type': 1,
             'opts': [(0, 1, 1), (1, 4, 2), (2, 4, 2), (3, 1, 0), (4, 4, 2), (5, 4, 2)]}]
    open(os.path.join(d, 'dilated_valid.tflite'), 'wb').write(build(ts2, ops2, 0, 2))


if __name__ == '__main__':
    main()
