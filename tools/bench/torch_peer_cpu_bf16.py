#!/usr/bin/env python3
"""The PyTorch peer's CPU bench (../shared/anchors/torch_peer.py --cpu-bench) under bf16 autocast,
as a PyTorch user runs the model on a CPU: f32 weights, `torch.autocast("cpu", dtype=torch.bfloat16)`
around each call (oneDNN's bf16 kernels, AMX or AVX512-BF16 where the CPU has them). Same rows,
same shapes, same timing rule (one warm-up, median of 3) as the f32 peer, so the two compare.

    python3 tools/bench/torch_peer_cpu_bf16.py [--threads N] [--json OUT.json] [--peer PATH]
"""
import argparse
import importlib.util
import json
import os
import time

HERE = os.path.dirname(os.path.abspath(__file__))


def load_peer(path):
    spec = importlib.util.spec_from_file_location("torch_peer", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int)
    ap.add_argument("--json")
    ap.add_argument("--only", action="append", default=[], help="rows whose name contains this")
    ap.add_argument("--peer", default=os.path.join(HERE, "..", "..", "..", "shared", "anchors", "torch_peer.py"))
    a = ap.parse_args()
    peer = load_peer(a.peer)
    torch = peer.torch
    torch.set_num_threads(a.threads or torch.get_num_threads())
    res = {"device": "cpu", "autocast": "bfloat16", "threads": torch.get_num_threads(), "torch": torch.__version__,
           "rows": {}}
    want = lambda n: not a.only or any(o in n for o in a.only)

    def wall(fn, reps=3):
        def run():
            with torch.autocast("cpu", dtype=torch.bfloat16):
                fn()
        run()
        ts = []
        for _ in range(reps):
            t0 = time.perf_counter()
            run()
            ts.append((time.perf_counter() - t0) * 1e3)
        ts.sort()
        return {"median_ms": ts[len(ts) // 2], "min_ms": ts[0], "max_ms": ts[-1]}

    with torch.inference_mode():
        if want("vae"):
            vae = peer.random_vae("cpu", torch.float32)
            z = torch.randn(1, 4, 64, 64)
            img = torch.rand(1, 3, 512, 512) * 2 - 1
            if want("vae_decode"):
                res["rows"]["vae_decode_512_b1"] = dict(wall(lambda: vae.decode(z)), tflop=2.5145)
            if want("vae_encode"):
                res["rows"]["vae_encode_512_b1"] = dict(wall(lambda: vae.encode(img)), tflop=1.1167)
            del vae
        if want("dit"):
            dit = peer.random_dit(peer.generalist_cfg(), "cpu", torch.float32)
            x = torch.randn(1, 12, 64, 64)
            t = torch.full((1,), 501.0)
            y = torch.tensor([1000])
            res["rows"]["dit_forward_b1"] = dict(wall(lambda: dit.forward(x, t, y)), tflop=1.6585)
    for k, v in res["rows"].items():
        print(f"{k:22s} {v['median_ms'] / 1e3:8.2f} s  ({v['tflop'] / v['median_ms'] * 1e6:.0f} GFLOP/s)  bf16 autocast")
    if a.json:
        json.dump(res, open(a.json, "w"), indent=1)


if __name__ == "__main__":
    main()
