#!/usr/bin/env python3
"""st_meta.py IN OUT [KEY=VALUE | -KEY]... — a copy of a safetensors file with its metadata
(the "__metadata__" strings: dfd.model/1's task, threshold, input_size...) changed: KEY=VALUE
sets a key, -KEY removes one. The tensors are copied byte for byte. For tests that need a
model file that differs from a shipped one only in what its metadata says."""
import json
import struct
import sys


def main(argv):
    if len(argv) < 3:
        sys.exit(__doc__)
    src, dst, edits = argv[1], argv[2], argv[3:]
    with open(src, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    meta = header.setdefault("__metadata__", {})
    for e in edits:
        if e.startswith("-"):
            meta.pop(e[1:], None)
        else:
            k, v = e.split("=", 1)
            meta[k] = v
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)  # keep the data 8-byte aligned, as writers do
    with open(dst, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        f.write(data)


if __name__ == "__main__":
    main(sys.argv)
