#!/usr/bin/env python3
"""Runs an exported model file in torch (DDIM, one sample) on the toy validation split and compares
each task with its trivial baseline, at the ground truth's own resolution (predictions resized back
bilinearly, as the engine does):
  depth   AbsRel after a least-squares scale and shift   vs a constant depth (the same fit)
  flow    EPE in pixels                                  vs zero flow
  amodal  IoU of the predicted mask (channel mean in [0, 1] below 0.95) with the whole mask
                                                         vs the visible mask's IoU with it

  python3 tools/train/evaluate.py toy_data/demo_model.safetensors [--data toy_data] [--steps 20]
Exit status 1 when a task does not beat its baseline.
"""
import os

# Idle OpenMP threads sleep instead of spinning: on a small shared machine spinning threads steal
# the cores the working ones need (measured: several times faster steps under load).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse, json, sys

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from safetensors import safe_open
from safetensors.torch import load_file

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import data  # noqa: E402
import model as M  # noqa: E402


def load_model(path):
    with safe_open(path, "pt") as f:
        cfg = json.loads(f.metadata()["percept.config"])
    sd = {k: v.float() for k, v in load_file(path).items()}
    dit = M.DiT(cfg["dit"])
    dit.load_state_dict({k: v for k, v in sd.items() if not k.startswith("vae.")})
    vcfg = dict(cfg["vae"])
    vcfg.setdefault("norm_eps", vcfg.get("groupnorm_eps", 1e-6))
    vae = M.VAE(vcfg)
    vae.load_state_dict({k[4:]: v for k, v in sd.items() if k.startswith("vae.")})
    return dit.eval(), vae.eval(), cfg


@torch.no_grad()
def predict(dit, vae, rgb, prompt, labels, steps, seed):
    """rgb/prompt [B, 3, R, R] numpy; returns decoded [B, 3, R, R]."""
    lat = vae.encode(torch.from_numpy(np.concatenate([rgb, prompt])).float())
    B = rgb.shape[0]
    cond = torch.cat([lat[:B], lat[B:]], 1)
    g = torch.Generator().manual_seed(seed)
    noise = torch.randn(cond[:, :4].shape, generator=g)
    z = M.ddim_sample(dit, cond, torch.tensor(labels), noise, steps)
    return vae.decode(z)


def up(x, size):
    return F.interpolate(torch.as_tensor(x)[None].float(), size=size, mode="bilinear", align_corners=False)[0].numpy()


def lsq(pred, gt):
    A = np.stack([pred.ravel(), np.ones(pred.size)], 1)
    coef, *_ = np.linalg.lstsq(A, gt.ravel(), rcond=None)
    return pred * coef[0] + coef[1]


def iou(a, b):
    return float((a & b).sum() / max((a | b).sum(), 1))


def evaluate(path, root, steps, seed, batch=16):
    dit, vae, cfg = load_model(path)
    R, fs = cfg["resolution"], cfg["flow_scale"]
    val = data.load_all([root], "val", R, fs)
    res = {}
    # depth
    ab, ab0 = [], []
    ds = val["depth"]
    for i in range(0, len(ds), batch):
        chunk = ds[i:i + batch]
        out = predict(dit, vae, np.stack([s["rgb"] for s in chunk]), np.stack([s["prompt"] for s in chunk]),
                      [1000] * len(chunk), steps, seed + i)
        for s, o in zip(chunk, out):
            gt = np.asarray(Image.open(os.path.join(root, "Hypersim_small", "val",
                                                    s["name"].replace("rgb_", "depth_plane_"))), np.float32) / 1000
            d = up(o.mean(0, keepdim=True).numpy(), gt.shape)[0]
            ab.append(np.mean(np.abs(lsq(d, gt) - gt) / gt))
            ab0.append(np.mean(np.abs(gt.mean() - gt) / gt))
    res["depth_absrel"], res["depth_absrel_constant"] = float(np.mean(ab)), float(np.mean(ab0))
    # flow
    ep, ep0 = [], []
    fl = val["flow"]
    for i in range(0, len(fl), batch):
        chunk = fl[i:i + batch]
        n = len(chunk)
        rgb = np.stack([s["rgb"] for s in chunk] * 2)
        prm = np.stack([s["prompt"] for s in chunk] * 2)
        out = predict(dit, vae, rgb, prm, [1002] * n + [1003] * n, steps, seed + 1000 + i)
        for j, s in enumerate(chunk):
            gt = data.read_flo(os.path.join(root, "FlyingChairs_small", "data", f"{s['name']}_flow.flo"))
            H, W = gt.shape[:2]
            pred = np.stack([out[j].mean(0).numpy(), out[n + j].mean(0).numpy()]) * fs * (W / R)
            pred = up(pred, (H, W)).transpose(1, 2, 0)
            ep.append(np.mean(np.linalg.norm(pred - gt, axis=-1)))
            ep0.append(np.mean(np.linalg.norm(gt, axis=-1)))
    res["flow_epe"], res["flow_epe_zero"] = float(np.mean(ep)), float(np.mean(ep0))
    # amodal
    io, io0 = [], []
    am = val["amodal"]
    base = os.path.join(root, "Pix2Gestalt_small", "val")
    for i in range(0, len(am), batch):
        chunk = am[i:i + batch]
        out = predict(dit, vae, np.stack([s["rgb"] for s in chunk]), np.stack([s["prompt"] for s in chunk]),
                      [1001] * len(chunk), steps, seed + 2000 + i)
        for s, o in zip(chunk, out):
            wm = np.asarray(Image.open(os.path.join(base, "whole_mask", f"{s['name']}_whole_mask.png")).convert("L")) > 127
            vis = np.asarray(Image.open(os.path.join(base, "visible_object_mask",
                                                     f"{s['name']}_visible_mask.png")).convert("L")) > 127
            img = up(o.clamp(-1, 1).numpy(), wm.shape)
            mask = ((img + 1) / 2).mean(0) < 0.95
            io.append(iou(mask, wm))
            io0.append(iou(vis, wm))
    res["amodal_iou"], res["amodal_iou_visible"] = float(np.mean(io)), float(np.mean(io0))
    return res


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model")
    ap.add_argument("--data", default="toy_data")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    r = evaluate(a.model, a.data, a.steps, a.seed)
    ok = [r["depth_absrel"] < r["depth_absrel_constant"], r["flow_epe"] < r["flow_epe_zero"],
          r["amodal_iou"] > r["amodal_iou_visible"]]
    print(f"depth  AbsRel {r['depth_absrel']:.4f}  (constant depth {r['depth_absrel_constant']:.4f})  {'OK' if ok[0] else 'WORSE'}")
    print(f"flow   EPE    {r['flow_epe']:.3f} px (zero flow {r['flow_epe_zero']:.3f})  {'OK' if ok[1] else 'WORSE'}")
    print(f"amodal IoU    {r['amodal_iou']:.4f}  (visible mask {r['amodal_iou_visible']:.4f})  {'OK' if ok[2] else 'WORSE'}")
    print(json.dumps(r))
    sys.exit(0 if all(ok) else 1)


if __name__ == "__main__":
    main()
