#!/usr/bin/env python3
"""Stage 4: continues the DiT of an exported model file (warm start) with task-balanced batches.

The shipped DiT is undertrained for amodal completion: its samples are greyish and blotchy and the
mask threshold turns stray blots into false mask. This stage loads the exported file (DiT tensors
plain, VAE under `vae.`), keeps the whole VAE frozen (the encoder is the one the DiT learnt its
latents from; stage 3 only moved the decoder) and trains the DiT on with the same v-prediction
loss, drawing each batch row's task first (amodal oversampled, depth and flow kept so they do not
regress), a short warm-up, cosine decay to zero and EMA. Seeded: the same data, steps and seed
give the same weights.

  python3 tools/train/finetune.py --model toy_data/demo_model.safetensors \
      --data toy_data /tmp/toy_seed1 /tmp/toy_seed2 --out /tmp/ft_run
  python3 tools/train/export.py /tmp/ft_run toy_data/demo_model.safetensors

Writes OUT/dit.pt (EMA, last step), OUT/dit_stepN.pt (every --save-every steps), OUT/vae.pt and
OUT/config.json (both as loaded), OUT/latents.pt (reused by a rerun on the same data) and
OUT/train.log.
"""
import os

# Idle OpenMP threads sleep instead of spinning (see train.py).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse, json, sys, time

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import data  # noqa: E402
import model as M  # noqa: E402
from evaluate import load_model  # noqa: E402
from train import encode_all, hflip_sample, lr_at, start_run, v_prediction_loss  # noqa: E402

TASKS = ("depth", "amodal", "flow")


@torch.no_grad()
def latent_rows(vae, samples, sf):
    """Scaled latents per (rgb, prompt, target, label) row, originals and mirrors (as train.py's
    build_latent_set), each distinct image encoded once, plus each row's task index."""
    imgs, rows = [], []

    def put(a):
        imgs.append(a)
        return len(imgs) - 1

    for s in samples["depth"] + samples["amodal"] + samples["flow"]:
        for v in (s, hflip_sample(s)):
            r, p = put(v["rgb"]), put(v["prompt"])
            if v["task"] == "flow":
                for key, lab in (("target_x", "flow_x"), ("target_y", "flow_y")):
                    rows.append((r, p, put(v[key]), M.TASK_LABELS[lab], TASKS.index("flow")))
            else:
                rows.append((r, p, put(v["target"]), M.TASK_LABELS[v["task"]], TASKS.index(v["task"])))
    lat = encode_all(vae, np.stack(imgs)) * sf
    ix = torch.tensor([row[:3] for row in rows])
    return (lat[ix[:, 0]], lat[ix[:, 1]], lat[ix[:, 2]], torch.tensor([row[3] for row in rows]),
            torch.tensor([row[4] for row in rows]))


def finetune(dit, lat, a, log, out):
    rgb, prompt, target, label, task = lat
    share = torch.tensor([a.depth_share, a.amodal_share, a.flow_share], dtype=torch.float64)
    share = share / share.sum()
    pools = [torch.nonzero(task == i, as_tuple=True)[0] for i in range(len(TASKS))]
    ac = M.alphas_cumprod()
    # The exported weights are already an EMA: the average starts there, not at a fresh init.
    ema = {k: v.detach().clone() for k, v in dit.state_dict().items()}
    opt = torch.optim.AdamW([p for p in dit.parameters() if p.requires_grad], lr=a.lr, weight_decay=0.0)
    g = torch.Generator().manual_seed(a.seed + 4)
    t0 = time.time()
    for step in range(a.steps):
        for pg in opt.param_groups:
            pg["lr"] = lr_at(step, a.steps, a.lr, a.warmup)
        which = torch.multinomial(share, a.batch, replacement=True, generator=g)
        idx = torch.stack([pools[w][torch.randint(0, len(pools[w]), (1,), generator=g)][0] for w in which.tolist()])
        loss, mse = v_prediction_loss(dit, ac, rgb[idx], prompt[idx], target[idx], label[idx], g)
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(dit.parameters(), 1.0)
        opt.step()
        with torch.no_grad():
            for k, p in dit.state_dict().items():
                ema[k].mul_(a.ema).add_(p.detach(), alpha=1 - a.ema)
        if step % 100 == 0 or step == a.steps - 1:
            log(f"finetune step {step} loss {loss.item():.4f} mse {mse.item():.4f} "
                f"lr {opt.param_groups[0]['lr']:.2e} ({time.time() - t0:.0f}s)")
        if (step + 1) % a.save_every == 0 or step + 1 == a.steps:
            torch.save(ema, os.path.join(out, f"dit_step{step + 1}.pt"))
    return ema


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="toy_data/demo_model.safetensors", help="exported model file to start from")
    ap.add_argument("--data", nargs="+", default=["toy_data"], help="toy-data roots (their train splits)")
    ap.add_argument("--out", default="finetune_out")
    ap.add_argument("--steps", type=int, default=1500)
    ap.add_argument("--batch", type=int, default=24)
    ap.add_argument("--lr", type=float, default=4e-4)
    ap.add_argument("--warmup", type=int, default=100)
    ap.add_argument("--ema", type=float, default=0.995)
    ap.add_argument("--amodal-share", type=float, default=0.6, help="share of batch rows drawn from amodal")
    ap.add_argument("--depth-share", type=float, default=0.2)
    ap.add_argument("--flow-share", type=float, default=0.2, help="flow_x and flow_y rows together")
    ap.add_argument("--save-every", type=int, default=250)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    log = start_run(a)

    t_start = time.time()
    dit, vae, cfg = load_model(a.model)
    for p in vae.parameters():
        p.requires_grad_(False)
    json.dump(cfg, open(os.path.join(a.out, "config.json"), "w"), indent=1)
    torch.save(vae.state_dict(), os.path.join(a.out, "vae.pt"))
    sf = cfg["vae"]["scaling_factor"]
    cache = os.path.join(a.out, "latents.pt")
    key = {"model": os.path.abspath(a.model), "data": [os.path.abspath(d) for d in a.data], "sf": sf}
    if os.path.exists(cache) and torch.load(cache)["key"] == key:
        lat = torch.load(cache)["lat"]
        log(f"latents: reused {cache}")
    else:
        samples = data.load_all(a.data, "train", cfg["resolution"], cfg["flow_scale"])
        log(f"data: {', '.join(f'{k} {len(v)}' for k, v in samples.items())} ({time.time() - t_start:.0f}s)")
        lat = latent_rows(vae, samples, sf)
        torch.save({"key": key, "lat": lat}, cache)
    counts = ", ".join(f"{n} {int((lat[4] == i).sum())}" for i, n in enumerate(TASKS))
    log(f"latents: {counts} rows; std {float(torch.cat(lat[:3]).std()):.3f} at scaling_factor {sf:.5f} "
        f"({time.time() - t_start:.0f}s)")
    dit.train()
    ema = finetune(dit, lat, a, log, a.out)
    torch.save(ema, os.path.join(a.out, "dit.pt"))
    log(f"done in {time.time() - t_start:.0f}s")


if __name__ == "__main__":
    main()
