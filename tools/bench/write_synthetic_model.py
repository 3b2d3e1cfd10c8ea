#!/usr/bin/env python3
"""Write the published model's shape (synthetic:generalist: the DiT and the SD-2 VAE, as
`vae.*`) to a .safetensors file, for memory measurements of a model that is read from a file
(memory-mapped) rather than generated in memory. The values are small uniform noise, not the
synthetic rule: this file is for timing and memory only. About 11 GB in f32 (5.5 GB in bf16).

    python3 tools/bench/write_synthetic_model.py OUT.safetensors [--dtype f32|bf16]
"""
import argparse
import json
import os
import struct

import numpy as np

ROOT = os.path.join(os.path.dirname(__file__), "..", "..", "src", "weights", "tables")


def tensors():
    dit = json.load(open(os.path.join(ROOT, "synthetic_generalist_dit.json")))
    vae = json.load(open(os.path.join(ROOT, "synthetic_sd2_vae.json")))
    for name, spec in dit["tensors"].items():
        yield name, spec["shape"]
    for name, spec in vae["tensors"].items():
        yield "vae." + name, spec["shape"]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--dtype", default="f32", choices=["f32", "bf16"])
    a = ap.parse_args()
    size = 4 if a.dtype == "f32" else 2
    header, offset, items = {}, 0, list(tensors())
    for name, shape in items:
        n = int(np.prod(shape)) * size
        header[name] = {"dtype": "F32" if a.dtype == "f32" else "BF16", "shape": shape, "data_offsets": [offset, offset + n]}
        offset += n
    text = json.dumps(header).encode()
    text += b" " * ((-(8 + len(text))) % 64)  # tensor data 64-byte aligned
    rng = np.random.default_rng(0)
    tmp = a.out + ".part"
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for name, shape in items:
            v = (rng.random(int(np.prod(shape)), dtype=np.float32) - 0.5) * 0.04
            if a.dtype == "bf16":
                v = (v.view(np.uint32) >> 16).astype(np.uint16)
            f.write(v.tobytes())
    os.replace(tmp, a.out)


if __name__ == "__main__":
    main()
