"""Reads the three toy-data layouts (see toy_data/README.md) into arrays at the model resolution.

Every task becomes (rgb, prompt, target) images of shape [3, R, R] in the value ranges of SPEC.md:
  depth   rgb in [-1, 1]; prompt = all-ones valid mask in {0, 1}; target = depth normalised per image
          to [-1, 1] between its 2nd and 98th percentile (Marigold's choice; clipped), 3 channels.
  amodal  rgb = the occlusion scene; prompt = visible mask as -1/1; target = the whole object on white.
  flow    rgb = frame 1; prompt = frame 2; targets = flow_x / flow_scale and flow_y / flow_scale
          (pixels at resolution R), each replicated to 3 channels.
Images are reduced with an area filter (as the engine does), masks with nearest, flow by averaging
then scaling its values by R / source size.
"""
import os

import numpy as np
from PIL import Image


def area_resize(a, r):
    """[H, W, C] float -> [r, r, C] by block averaging (H and W multiples of r) or PIL box otherwise."""
    h, w = a.shape[:2]
    if h % r == 0 and w % r == 0:
        fh, fw = h // r, w // r
        return a.reshape(r, fh, r, fw, -1).mean(axis=(1, 3))
    chans = [np.asarray(Image.fromarray(a[..., c].astype(np.float32), mode="F").resize((r, r), Image.BOX))
             for c in range(a.shape[2])]
    return np.stack(chans, -1)


def nearest_resize(a, r):
    img = Image.fromarray(a)
    return np.asarray(img.resize((r, r), Image.NEAREST))


def load_rgb(path, r):
    a = np.asarray(Image.open(path).convert("RGB"), dtype=np.float32) / 127.5 - 1.0
    return area_resize(a, r).transpose(2, 0, 1)


def load_mask(path, r):
    """0/255 grey -> bool [r, r] (nearest)."""
    a = np.asarray(Image.open(path).convert("L"))
    return nearest_resize(a, r) > 127


def read_flo(path):
    a = np.fromfile(path, dtype=np.float32)
    if a.size < 3 or abs(a[0] - 202021.25) > 1e-3:
        raise ValueError(f"{path}: not a .flo file")
    w, h = a[1:3].view(np.int32)
    return a[3:3 + 2 * w * h].reshape(h, w, 2)


def normalise_depth(d):
    lo, hi = np.percentile(d, 2), np.percentile(d, 98)
    return np.clip((d - lo) / max(hi - lo, 1e-6) * 2 - 1, -1, 1)


def rep3(x):
    return np.repeat(x[None].astype(np.float32), 3, axis=0)


def depth_samples(root, split, r):
    """Yields dicts with rgb, prompt, target, depth_gt (metres at r), name."""
    lst = os.path.join(root, "data_split", f"hysim_filename_list_{split}.txt")
    base = os.path.join(root, "Hypersim_small", split)
    out = []
    for line in open(lst):
        parts = line.split()
        if len(parts) != 2:
            continue
        rgb = load_rgb(os.path.join(base, parts[0]), r)
        d = np.asarray(Image.open(os.path.join(base, parts[1])), dtype=np.float32) / 1000.0
        d = area_resize(d[..., None], r)[..., 0]
        out.append(dict(task="depth", name=parts[0], rgb=rgb, prompt=np.ones_like(rgb),
                        target=rep3(normalise_depth(d)), depth=d))
    return out


def flow_samples(root, split, r, flow_scale):
    """split 'train' -> split-file value 1, 'val' -> 2; 'all' takes every sample."""
    d = os.path.join(root, "FlyingChairs_small")
    vals = [int(x) for x in open(os.path.join(d, "FlyingChairs_train_val.txt")).read().split()]
    want = {"train": 1, "val": 2}.get(split)
    out = []
    for i, v in enumerate(vals):
        if want is not None and v != want:
            continue
        stem = os.path.join(d, "data", f"{i + 1:05d}")
        f1 = load_rgb(stem + "_img1.ppm", r)
        f2 = load_rgb(stem + "_img2.ppm", r)
        fl = read_flo(stem + "_flow.flo")
        fl = area_resize(fl, r) * (r / fl.shape[1])
        out.append(dict(task="flow", name=f"{i + 1:05d}", rgb=f1, prompt=f2,
                        target_x=rep3(fl[..., 0] / flow_scale), target_y=rep3(fl[..., 1] / flow_scale),
                        flow=fl.transpose(2, 0, 1).astype(np.float32)))
    return out


def amodal_samples(root, split, r):
    base = os.path.join(root, "Pix2Gestalt_small", split)
    out = []
    for f in sorted(os.listdir(os.path.join(base, "occlusion"))):
        sid = f.split("_")[0]
        occ = load_rgb(os.path.join(base, "occlusion", f), r)
        vis = load_mask(os.path.join(base, "visible_object_mask", f"{sid}_visible_mask.png"), r)
        whole = load_rgb(os.path.join(base, "whole", f"{sid}_whole.png"), r)
        wm = load_mask(os.path.join(base, "whole_mask", f"{sid}_whole_mask.png"), r)
        out.append(dict(task="amodal", name=sid, rgb=occ, prompt=rep3(np.where(vis, 1.0, -1.0)),
                        target=whole, visible=vis, whole_mask=wm))
    return out


def load_all(roots, split, r, flow_scale):
    s = {"depth": [], "flow": [], "amodal": []}
    # A root may hold only some tasks (e.g. extra amodal data from the generator with 0 depth, 0 flow).
    for root in roots:
        if os.path.exists(os.path.join(root, "data_split", f"hysim_filename_list_{split}.txt")):
            s["depth"] += depth_samples(root, split, r)
        if os.path.isdir(os.path.join(root, "FlyingChairs_small")):
            s["flow"] += flow_samples(root, split, r, flow_scale)
        if os.path.isdir(os.path.join(root, "Pix2Gestalt_small", split)):
            s["amodal"] += amodal_samples(root, split, r)
    return s
