#!/usr/bin/env python3
"""Stage 5: the decoder trained on the DiT's own amodal samples (the encoder and DiT frozen).

The amodal mask is read off the decoded image (channel mean in [0, 1] below 0.95), so a decoder
trained only on clean latents (stages 1 and 3) paints every uncertain spot of a DiT sample a little
grey, and grey is mask. Here the fine-tuned DiT samples the training split's amodal rows (DDIM,
seeded noise, the steps the demo uses), and the decoder learns to turn those latents into the true
whole image: reconstruction as in stage 1 (white background only penalised when darker) plus a
cross-entropy on the soft mask the threshold would read (so a blot the DiT is unsure of decodes
white, not grey). Half of each batch keeps stage 3's objective (every image the pipeline decodes,
from its clean latent plus noise) so that depth and flow still decode as before.

  python3 tools/train/decoder_refine.py --model /tmp/ft.safetensors --latents /tmp/ft_run/latents.pt \
      --data toy_data /tmp/toy_seed1 /tmp/toy_seed2 --out /tmp/ft_run
  python3 tools/train/export.py /tmp/ft_run toy_data/demo_model.safetensors --vae /tmp/ft_run/vae_refined.pt

--latents is finetune.py's cache (same model encoder, same --data in the same order). Writes
OUT/samples.pt (the DiT's latents, reused by a rerun) and OUT/vae_refined.pt.
"""
import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse, sys, time

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import data  # noqa: E402
import model as M  # noqa: E402
from evaluate import load_model  # noqa: E402
from finetune import TASKS  # noqa: E402
from train import lr_at, start_run  # noqa: E402


def row_images(samples):
    """Per latent row (finetune.latent_rows' order): (sample, mirrored, target key), so images are
    fetched lazily instead of holding thousands of copies."""
    rows = []
    for s in samples["depth"] + samples["amodal"] + samples["flow"]:
        for flip in (False, True):
            keys = ("target_x", "target_y") if s["task"] == "flow" else ("target",)
            rows += [(s, flip, k) for k in keys]
    return rows


def image(s, flip, key):
    a = s[key]
    if flip:
        a = a[..., ::-1]
        if key == "target_x":
            a = -a
    return np.ascontiguousarray(a, dtype=np.float32)


def whole_mask(s, flip):
    m = s["whole_mask"][None].astype(np.float32)
    return np.ascontiguousarray(m[..., ::-1] if flip else m)


@torch.no_grad()
def sample_latents(dit, rgb, prompt, label, steps, seed, batch=64, log=print):
    g = torch.Generator().manual_seed(seed)
    noise = torch.randn(rgb.shape, generator=g)
    out, t0 = [], time.time()
    for i in range(0, rgb.shape[0], batch):
        cond = torch.cat([rgb[i:i + batch], prompt[i:i + batch]], 1)
        out.append(M.ddim_sample(dit, cond, label[i:i + batch], noise[i:i + batch], steps))
        if (i // batch) % 5 == 0:
            log(f"sampled {i + cond.shape[0]}/{rgb.shape[0]} ({time.time() - t0:.0f}s)")
    return torch.cat(out)


def recon_error(rec, x, white):
    """Stage 1's error: L1 + L2, where a white-background pixel only counts when decoded darker."""
    diff = rec - x
    bg = white[:, None, None, None] & (x >= 1.0).all(dim=1, keepdim=True)
    diff = torch.where(bg, diff.clamp(max=0.0), diff)
    return diff.abs().mean(dim=(1, 2, 3)) + (diff ** 2).mean(dim=(1, 2, 3))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True, help="exported model file after finetune.py")
    ap.add_argument("--latents", required=True, help="finetune.py's OUT/latents.pt")
    ap.add_argument("--data", nargs="+", default=["toy_data"])
    ap.add_argument("--out", required=True)
    ap.add_argument("--ddim-steps", type=int, default=20)
    ap.add_argument("--sample-rows", type=int, default=960, help="amodal rows the DiT samples (seeded subset; "
                    "sampling costs about 20 DiT forwards a row)")
    ap.add_argument("--steps", type=int, default=800)
    ap.add_argument("--batch", type=int, default=8, help="rows of DiT samples; as many clean rows beside them")
    ap.add_argument("--crop", type=int, default=16, help="latent crop (x4 pixels)")
    ap.add_argument("--lr", type=float, default=5e-4)
    ap.add_argument("--mask-weight", type=float, default=1.0)
    ap.add_argument("--mask-temp", type=float, default=0.02, help="soft threshold width (channel mean in [0, 1])")
    ap.add_argument("--noise", type=float, default=0.1, help="stage 3's latent noise for the clean rows")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    log = start_run(a)

    t_start = time.time()
    dit, vae, cfg = load_model(a.model)
    sf = cfg["vae"]["scaling_factor"]
    rgb, prompt, target, label, task = torch.load(a.latents)["lat"]
    samples = data.load_all(a.data, "train", cfg["resolution"], cfg["flow_scale"])
    rows = row_images(samples)
    if len(rows) != label.shape[0]:
        raise SystemExit(f"{a.latents}: {label.shape[0]} rows, but --data gives {len(rows)}: not the same data")
    am = torch.nonzero(task == TASKS.index("amodal"), as_tuple=True)[0]
    keep = torch.randperm(am.shape[0], generator=torch.Generator().manual_seed(a.seed + 7))[:a.sample_rows]
    am = am[keep.sort().values]
    cache = os.path.join(a.out, "samples.pt")
    key = {"model": os.path.abspath(a.model), "rows": am.tolist(), "steps": a.ddim_steps, "seed": a.seed}
    if os.path.exists(cache) and torch.load(cache)["key"] == key:
        zs = torch.load(cache)["z"]
        log(f"DiT samples: reused {cache}")
    else:
        zs = sample_latents(dit, rgb[am], prompt[am], label[am], a.ddim_steps, a.seed + 5, log=log)
        torch.save({"key": key, "z": zs}, cache)
    log(f"DiT samples: {zs.shape[0]} amodal rows ({time.time() - t_start:.0f}s)")
    del dit

    # Clean rows as in stage 3: every image a row decodes (its rgb, prompt and target), weighted as
    # train.vae_images weighs them.
    clean = [(r, comp) for r in range(label.shape[0]) for comp in ("rgb", "prompt", "target")]
    lat_of = {"rgb": rgb, "prompt": prompt, "target": target}
    with torch.no_grad():
        spread = float(target[::13].std()) / sf

    for p in vae.parameters():
        p.requires_grad_(False)
    params = list(vae.decoder.parameters()) + list(vae.post_quant_conv.parameters())
    for p in params:
        p.requires_grad_(True)
    vae.train()
    opt = torch.optim.Adam(params, lr=a.lr)
    g = torch.Generator().manual_seed(a.seed + 6)
    c, px = a.crop, 4 * a.crop
    t0 = time.time()
    for step in range(a.steps):
        for pg in opt.param_groups:
            pg["lr"] = lr_at(step, a.steps, a.lr, warm=50)
        i, j = (int(v) for v in torch.randint(0, zs.shape[-1] - c + 1, (2,), generator=g))
        crop_z = lambda z: z[..., i:i + c, j:j + c]
        crop_x = lambda x: x[..., 4 * i:4 * i + px, 4 * j:4 * j + px]

        pick = torch.randint(0, am.shape[0], (a.batch,), generator=g)
        s_rows = [rows[int(am[k])] for k in pick]
        x_s = crop_x(torch.from_numpy(np.stack([image(s, f, k) for s, f, k in s_rows])))
        m_s = crop_x(torch.from_numpy(np.stack([whole_mask(s, f) for s, f, _ in s_rows])))
        rec_s = vae.decode_raw(crop_z(zs[pick]) / sf)
        err_s = recon_error(rec_s, x_s, torch.ones(a.batch, dtype=torch.bool))
        m01 = ((rec_s.clamp(-1, 1) + 1) / 2).mean(dim=1, keepdim=True)
        bce = F.binary_cross_entropy_with_logits((0.95 - m01) / a.mask_temp, m_s)

        cpick = torch.randint(0, len(clean), (a.batch,), generator=g)
        zc, xc, wc, whc = [], [], [], []
        for k in cpick.tolist():
            r, comp = clean[k]
            s, f, key_t = rows[r]
            zc.append(lat_of[comp][r])
            xc.append(image(s, f, key_t if comp == "target" else comp))
            is_target = comp == "target"
            wc.append((4.0 if s["task"] == "amodal" else 2.0) if is_target else 1.0)
            whc.append(is_target and s["task"] == "amodal")
        zc = crop_z(torch.stack(zc)) / sf
        zc = zc + torch.randn(zc.shape, generator=g) * a.noise * spread
        rec_c = vae.decode_raw(zc)
        err_c = recon_error(rec_c, crop_x(torch.from_numpy(np.stack(xc))), torch.tensor(whc))

        loss = 4.0 * err_s.mean() + a.mask_weight * bce + (err_c * torch.tensor(wc)).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % 100 == 0 or step == a.steps - 1:
            log(f"refine step {step} loss {loss.item():.4f} samples {err_s.mean().item():.4f} "
                f"mask-bce {bce.item():.4f} clean {err_c.mean().item():.4f} ({time.time() - t0:.0f}s)")
    vae.eval()
    torch.save(vae.state_dict(), os.path.join(a.out, "vae_refined.pt"))
    log(f"done in {time.time() - t_start:.0f}s")


if __name__ == "__main__":
    main()
