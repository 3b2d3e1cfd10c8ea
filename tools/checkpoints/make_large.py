#!/usr/bin/env python3
"""Writes OUT/large.pt, a torch.save checkpoint over 4 GiB (so its zip uses zip64 sizes and
offsets), and OUT/large.json with what torch.load reads back: per tensor its byte count, the sum
of its bytes and its last 16 bytes. Used by the opt-in test checkpoint_over_4gib_loads_with_zip64
(tests/checkpoint_matrix.rs).

    python3 tools/checkpoints/make_large.py OUT
"""

import json
import os
import sys

import torch


def byte_sum(raw):
    """Sum of the bytes, in chunks (a sum in int64 of 4 GiB at once would need 32 GiB)."""
    step = 1 << 26
    return sum(int(raw[i : i + step].sum(dtype=torch.int64)) for i in range(0, raw.numel(), step))


def main():
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    g = torch.Generator().manual_seed(0)
    big = torch.zeros((1 << 32) + (1 << 20), dtype=torch.uint8)  # 4 GiB + 1 MiB
    big[-4096:] = torch.randint(0, 256, (4096,), generator=g, dtype=torch.uint8)
    sd = {
        "before": torch.rand(1000, generator=g),
        "big": big,
        # Stored after the big storage: its local header lies past 4 GiB (zip64 offset).
        "after": torch.rand(3, 5, generator=g, dtype=torch.float64),
    }
    path = os.path.join(out, "large.pt")
    torch.save(sd, path)
    del sd, big
    loaded = torch.load(path, weights_only=True, mmap=True)
    want = []
    for name, t in loaded.items():
        raw = t.contiguous().view(torch.uint8).reshape(-1)
        want.append(
            {
                "name": name,
                "nbytes": raw.numel(),
                "byte_sum": byte_sum(raw),
                "tail_hex": raw[-16:].numpy().tobytes().hex(),
            }
        )
    with open(os.path.join(out, "large.json"), "w") as f:
        json.dump({"tensors": want}, f, indent=1)
    print(f"wrote {path} ({os.path.getsize(path)} bytes)")


if __name__ == "__main__":
    main()
