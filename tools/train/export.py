#!/usr/bin/env python3
"""Writes a trained run (OUT/vae.pt, OUT/dit.pt, OUT/config.json from train.py) as one percept model
file: the DiT under the authors' names, the VAE under `vae.`, metadata `percept.config`, and the
same JSON as config.json beside it.

  python3 tools/train/export.py RUN_DIR toy_data/demo_model.safetensors [--dtype f32|f16] [--dit FILE] [--vae FILE]
"""
import argparse, json, os

import torch
from safetensors.torch import save_file


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run")
    ap.add_argument("out")
    ap.add_argument("--dtype", choices=["f32", "f16"], default="f32")
    ap.add_argument("--dit", help="DiT state dict to export instead of RUN/dit.pt (e.g. a checkpoint)")
    ap.add_argument("--vae", help="VAE state dict to export instead of RUN/vae.pt")
    a = ap.parse_args()
    cfg = json.load(open(os.path.join(a.run, "config.json")))
    dt = torch.float32 if a.dtype == "f32" else torch.float16
    tensors = {k: v.to(dt).contiguous() for k, v in torch.load(a.dit or os.path.join(a.run, "dit.pt")).items()}
    for k, v in torch.load(a.vae or os.path.join(a.run, "vae.pt")).items():
        tensors["vae." + k] = v.to(dt).contiguous()
    text = json.dumps(cfg, sort_keys=True)
    save_file(tensors, a.out, metadata={"percept.config": text})
    side = os.path.join(os.path.dirname(os.path.abspath(a.out)), "config.json")
    with open(side, "w") as f:
        json.dump(cfg, f, indent=1, sort_keys=True)
        f.write("\n")
    n = sum(v.numel() for v in tensors.values())
    print(f"{a.out}: {len(tensors)} tensors, {n} parameters, {os.path.getsize(a.out)} bytes; {side}")


if __name__ == "__main__":
    main()
