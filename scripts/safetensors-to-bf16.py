#!/usr/bin/env python3
"""safetensors-to-bf16.py IN OUT — stores every F32 tensor of a dfd model file as BF16
(round to nearest even, as dfd's own writer does), keeping the metadata, so a shipped
model takes half the space. Plain standard library: no numpy needed."""
import json, struct, sys
from array import array

src, dst = sys.argv[1:3]
raw = open(src, 'rb').read()
n = struct.unpack('<Q', raw[:8])[0]
header = json.loads(raw[8:8 + n])
data = raw[8 + n:]
meta = header.pop('__metadata__', {})
out_header, chunks, off = {}, [], 0
for name in sorted(header):
    t = header[name]
    b, e = t['data_offsets']
    buf = data[b:e]
    if t['dtype'] == 'F32':
        u = array('I'); u.frombytes(buf)
        h = array('H', (((x + 0x7FFF + ((x >> 16) & 1)) >> 16) & 0xFFFF if (x & 0x7F800000) != 0x7F800000
                        else (x >> 16) | (0x40 if x & 0xFFFF else 0) for x in u))
        buf = h.tobytes()
        dtype = 'BF16'
    else:
        dtype = t['dtype']
    out_header[name] = {'dtype': dtype, 'shape': t['shape'], 'data_offsets': [off, off + len(buf)]}
    chunks.append(buf); off += len(buf)
out_header['__metadata__'] = meta
hj = json.dumps(out_header, separators=(',', ':')).encode()
hj += b' ' * ((8 - len(hj) % 8) % 8)
with open(dst, 'wb') as f:
    f.write(struct.pack('<Q', len(hj))); f.write(hj)
    for c in chunks: f.write(c)
