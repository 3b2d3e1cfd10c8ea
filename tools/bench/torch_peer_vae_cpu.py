#!/usr/bin/env python3
"""The PyTorch peer's CPU VAE rows (`torch_peer.py --cpu-bench`: vae_decode_512_b1 and
vae_encode_512_b1) on their own, so they can alternate with percept's rows in one session
(tools/bench/cpu_side_by_side.sh). Same model, inputs and timing as the peer's --cpu-bench
(median of 3 after a warm-up, inference mode).

  python3 tools/bench/torch_peer_vae_cpu.py [--threads 2] [--anchors ../shared/anchors]
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

torch.set_num_threads(args.threads)


def wall(fn, reps=3):
    fn()
    ts = []
    for _ in range(reps):
        a = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - a)
    ts.sort()
    return ts


with torch.inference_mode():
    vae = peer.random_vae("cpu", torch.float32)
    z = torch.randn(1, 4, 64, 64)
    img = torch.rand(1, 3, 512, 512) * 2 - 1
    for name, fn, tflop in [("vae_decode", lambda: vae.decode(z), 2.5145), ("vae_encode", lambda: vae.encode(img), 1.1167)]:
        ts = wall(fn)
        print(f"torch_peer {name}_512_b1: median {ts[1]:.2f} s (min {ts[0]:.2f}, max {ts[2]:.2f}), "
              f"{tflop / ts[1] * 1e3:.0f} GFLOP/s, {torch.get_num_threads()} threads, torch {torch.__version__}")
