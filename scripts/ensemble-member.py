#!/usr/bin/env python3
"""ensemble-member.py ENSEMBLE K OUT — member K (0-based) of a `dfd ensemble` file as a model
file of its own: the tensors under `mK/` with the prefix taken off, the ensemble's metadata
without `members` (the threshold stays the ensemble's: choose the member's own with
`dfd eval --split val` or `dfd calibrate`).

Why: `dfd train --init` refuses an ensemble (docs/training.md), so fine-tuning a shipped
ensemble's networks (scripts/train-manipulation-model.sh, VARIANT=lmlocft) starts from
each member taken out this way. The bytes of each tensor are copied as they are (BF16 or
F32). Plain standard library."""
import json, struct, sys


def main(argv):
    if len(argv) != 4:
        sys.exit(__doc__)
    path, k, out = argv[1], int(argv[2]), argv[3]
    raw = open(path, 'rb').read()
    n = struct.unpack('<Q', raw[:8])[0]
    header = json.loads(raw[8:8 + n])
    data = raw[8 + n:]
    meta = header.pop('__metadata__', {})
    members = int(meta.get('members', '0'))
    if members < 2:
        sys.exit(f'{path}: not an ensemble (no "members" in its metadata)')
    if not 0 <= k < members:
        sys.exit(f'{path}: member {k} asked, the file has {members} (0 to {members - 1})')
    prefix = f'm{k}/'
    meta = {key: v for key, v in meta.items() if key != 'members'}
    meta['training_data'] = f'member {k} of {path}: ' + meta.get('training_data', '')
    new_header, chunks, off = {}, [], 0
    for name in sorted(header, key=lambda t: header[t]['data_offsets'][0]):
        if not name.startswith(prefix):
            continue
        t = header[name]
        b, e = t['data_offsets']
        new_header[name[len(prefix):]] = {'dtype': t['dtype'], 'shape': t['shape'],
                                           'data_offsets': [off, off + e - b]}
        chunks.append(data[b:e])
        off += e - b
    if not new_header:
        sys.exit(f'{path}: no tensor under {prefix}')
    new_header['__metadata__'] = meta
    blob = json.dumps(new_header, separators=(',', ':')).encode()
    blob += b' ' * (-len(blob) % 8)
    with open(out, 'wb') as f:
        f.write(struct.pack('<Q', len(blob)))
        f.write(blob)
        for c in chunks:
            f.write(c)
    print(f'{out}: member {k} of {path}, {len(new_header) - 1} tensors')


if __name__ == '__main__':
    main(sys.argv)
