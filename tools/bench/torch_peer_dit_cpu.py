#!/usr/bin/env python3
"""The PyTorch peer's CPU DiT row (`torch_peer.py --cpu-bench`, dit_forward_b1) on a 24 GB machine.

The stock script holds every expert's weights twice while it stacks them (~21 GB) and is
OOM-killed on the 2-core, 24 GB development machine. This harness runs the peer's own code
unchanged, except that each expert tensor is dropped from the state dict as soon as the peer has
read it for stacking, which keeps the peak near 12 GB. Same model, same inputs, same timing
(median of 3 after a warm-up, inference mode).

  python3 tools/bench/torch_peer_dit_cpu.py [--threads 2] [--anchors ../shared/anchors]
"""
import argparse
import sys
import time

ap = argparse.ArgumentParser()
ap.add_argument("--threads", type=int, default=2)
ap.add_argument("--anchors", default="../shared/anchors")
args = ap.parse_args()
sys.path.insert(0, args.anchors)

import torch  # noqa: E402
import torch_peer as peer  # noqa: E402


class PopExperts(dict):
    """A state dict that hands out each expert tensor once and forgets it."""

    def __getitem__(self, key):
        if ".moe.experts." in key:
            return self.pop(key)
        return super().__getitem__(key)


PeerDiT = peer.DiT


def lean_dit(sd, cfg):
    lean = PopExperts(sd)
    sd.clear()  # the caller's dict must not keep the experts alive either
    return PeerDiT(lean, cfg)


peer.DiT = lean_dit
torch.set_num_threads(args.threads)
with torch.inference_mode():
    t0 = time.perf_counter()
    dit = peer.random_dit(peer.generalist_cfg(), "cpu", torch.float32)
    print(f"built the peer's DiT in {time.perf_counter() - t0:.1f} s")
    x = torch.randn(1, 12, 64, 64)
    t = torch.full((1,), 501.0)
    y = torch.tensor([1000])
    dit.forward(x, t, y)
    ts = []
    for _ in range(3):
        a = time.perf_counter()
        dit.forward(x, t, y)
        ts.append(time.perf_counter() - a)
    ts.sort()
    print(f"torch_peer dit_forward_b1: median {ts[1]:.2f} s (min {ts[0]:.2f}, max {ts[2]:.2f}), "
          f"{1.6585 / ts[1] * 1e3:.0f} GFLOP/s, {torch.get_num_threads()} threads, torch {torch.__version__}")
