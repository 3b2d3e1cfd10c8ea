#!/usr/bin/env python3
"""Trains the tiny generalist (DiT-MoE + AutoencoderKL) on the toy data, in two stages:

  1. the VAE as an autoencoder over every image the pipeline encodes or decodes (inputs, prompts,
     targets), L1 + L2 reconstruction with a tiny KL term;
  2. the VAE frozen, all latents precomputed once (with left-right flips as augmentation), the DiT
     trained with v-prediction on the SD-2 schedule for the four task labels, EMA weights kept;
  3. the encoder frozen (the DiT's latents do not move), the decoder trained on.

The run is fixed by its step counts and seed (not by wall time), so it is reproducible; see
README.md for the command and measured times. Writes OUT/vae_stage1.pt, OUT/vae.pt (after stage 3), OUT/dit.pt (EMA) and OUT/config.json.
"""
import os

# Idle OpenMP threads sleep instead of spinning: on a small shared machine spinning threads steal
# the cores the working ones need (measured: several times faster steps under load).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse, json, random, time

import numpy as np
import torch
import torch.nn.functional as F

import data
import model as M


def seed_all(s):
    random.seed(s)
    np.random.seed(s)
    torch.manual_seed(s)


def hflip_sample(s):
    """Left-right mirror of a sample; flow x changes sign."""
    f = dict(s)
    for k in ("rgb", "prompt", "target"):
        if k in s:
            f[k] = s[k][..., ::-1].copy()
    if "target_x" in s:
        f["target_x"] = -s["target_x"][..., ::-1].copy()
        f["target_y"] = s["target_y"][..., ::-1].copy()
    return f


def vae_images(samples):
    """Every image the pipeline sees, with a loss weight (targets must decode exactly) and a flag
    for the amodal targets, whose white background is only penalised when it decodes darker."""
    imgs, wts, white = [], [], []
    for s in samples["depth"]:
        imgs += [s["rgb"], s["prompt"], s["target"]]
        wts += [1.0, 1.0, 2.0]
        white += [False] * 3
    # The amodal mask is read off the decoded image (mean below 0.95 of white), so any blur or
    # grey cast around the object becomes false mask: those targets weigh most.
    for s in samples["amodal"]:
        imgs += [s["rgb"], s["prompt"], s["target"]]
        wts += [1.0, 1.0, 4.0]
        white += [False, False, True]
    for s in samples["flow"]:
        imgs += [s["rgb"], s["prompt"], s["target_x"], s["target_y"]]
        wts += [1.0, 1.0, 2.0, 2.0]
        white += [False] * 4
    return torch.from_numpy(np.stack(imgs)).float(), torch.tensor(wts), torch.tensor(white)


def start_run(a):
    """Threads, seeds and OUT/train.log of a stage run from its parsed arguments (threads, seed,
    out); returns the logger (stdout and the log file)."""
    torch.set_num_threads(a.threads)
    seed_all(a.seed)
    os.makedirs(a.out, exist_ok=True)
    logf = open(os.path.join(a.out, "train.log"), "a")

    def log(msg):
        print(msg, flush=True)
        logf.write(msg + "\n")
        logf.flush()

    return log


def v_prediction_loss(dit, ac, rgb, prompt, x0, label, g):
    """The DiT's v-prediction loss on clean latents x0 at uniform timesteps, plus the MoE balance
    term: (loss, mse). Draws the noise, then the timesteps, from `g`."""
    noise = torch.randn(x0.shape, generator=g)
    t = torch.randint(0, 1000, (x0.shape[0],), generator=g)
    a = ac[t][:, None, None, None]
    xt = a.sqrt() * x0 + (1 - a).sqrt() * noise
    v = a.sqrt() * noise - (1 - a).sqrt() * x0
    pred = dit(torch.cat([rgb, prompt, xt], 1), t.float(), label)[:, :4]
    mse = F.mse_loss(pred, v)
    return mse + 0.01 * dit.aux_loss(), mse


def lr_at(step, total, base, warm=200):
    if step < warm:
        return base * (step + 1) / warm
    return base * 0.5 * (1 + np.cos(np.pi * (step - warm) / max(total - warm, 1)))


def train_vae(vae, imgs, wts, white, steps, batch, lr, crop, log, params=None, seed=1, tag="vae", latent_noise=0.0):
    opt = torch.optim.Adam(list(params or vae.parameters()), lr=lr)
    n = imgs.shape[0]
    g = torch.Generator().manual_seed(seed)
    t0 = time.time()
    for step in range(steps):
        for pg in opt.param_groups:
            pg["lr"] = lr_at(step, steps, lr)
        idx = torch.randint(0, n, (batch,), generator=g)
        x = imgs[idx]
        if crop < x.shape[-1]:  # the VAE is convolutional: random crops cut its cost
            i, j = (int(v) for v in torch.randint(0, x.shape[-1] - crop + 1, (2,), generator=g))
            x = x[..., i:i + crop, j:j + crop]
        flip = torch.rand(batch, generator=g) < 0.5
        x = torch.where(flip[:, None, None, None], x.flip(-1), x)
        mean, logvar = vae.moments(x)
        logvar = logvar.clamp(-30, 20)
        z = mean + torch.randn(mean.shape, generator=g) * ((0.5 * logvar).exp() + latent_noise)
        rec = vae.decode_raw(z)
        diff = rec - x
        # Pure-white background of amodal targets: overshooting white is harmless (outputs are
        # clamped) and buys a margin below the mask threshold, so only darker is an error.
        bg = white[idx][:, None, None, None] & (x >= 1.0).all(dim=1, keepdim=True)
        diff = torch.where(bg, diff.clamp(max=0.0), diff)
        err = diff.abs().mean(dim=(1, 2, 3)) + (diff ** 2).mean(dim=(1, 2, 3))
        kl = 0.5 * (mean ** 2 + logvar.exp() - 1 - logvar).mean()
        loss = (err * wts[idx]).mean() + 1e-5 * kl
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % 100 == 0 or step == steps - 1:
            log(f"{tag} step {step} loss {loss.item():.4f} rec {err.mean().item():.4f} kl {kl.item():.2f} "
                f"({time.time() - t0:.0f}s)")


def finetune_decoder(vae, samples, steps, log, rel_noise):
    """Stage 3: the encoder (and so every latent the DiT learnt) frozen, the decoder trained on,
    with noise of `rel_noise` times the latents' spread added so that the DiT's imperfect latents
    still decode cleanly. Independent of the DiT stage, so it may run before, after or beside it."""
    imgs, wts, white = vae_images(samples)
    with torch.no_grad():
        spread = float(vae.moments(imgs[torch.arange(0, imgs.shape[0], 13)])[0].std())
    for p in vae.parameters():
        p.requires_grad_(False)
    params = list(vae.decoder.parameters()) + list(vae.post_quant_conv.parameters())
    for p in params:
        p.requires_grad_(True)
    train_vae(vae, imgs, wts, white, steps, 16, 1e-3, 32, log, params=params, seed=3, tag="decoder",
              latent_noise=rel_noise * spread)


@torch.no_grad()

@torch.no_grad()
def encode_all(vae, arr, batch=64):
    out = []
    for i in range(0, arr.shape[0], batch):
        out.append(vae.moments(torch.from_numpy(np.ascontiguousarray(arr[i:i + batch])).float())[0])
    return torch.cat(out)


@torch.no_grad()
def build_latent_set(vae, samples):
    """Unscaled latent means for (rgb, prompt, target, label) rows, original and mirrored."""
    rgb, prompt, target, label = [], [], [], []
    for s in samples["depth"] + samples["amodal"] + samples["flow"]:
        for v in (s, hflip_sample(s)):
            if v["task"] == "flow":
                for key, lab in (("target_x", "flow_x"), ("target_y", "flow_y")):
                    rgb.append(v["rgb"]); prompt.append(v["prompt"]); target.append(v[key])
                    label.append(M.TASK_LABELS[lab])
            else:
                rgb.append(v["rgb"]); prompt.append(v["prompt"]); target.append(v["target"])
                label.append(M.TASK_LABELS[v["task"]])
    enc = lambda xs: encode_all(vae, np.stack(xs))
    return enc(rgb), enc(prompt), enc(target), torch.tensor(label)


def train_dit(dit, lat, steps, batch, lr, log, save, stop_after=None, ema_decay=0.995):
    rgb, prompt, target, label = lat
    ac = M.alphas_cumprod()
    ema = {k: v.detach().clone() for k, v in dit.state_dict().items()}
    opt = torch.optim.AdamW([p for p in dit.parameters() if p.requires_grad], lr=lr, weight_decay=0.0)
    g = torch.Generator().manual_seed(2)
    n = label.shape[0]
    t0 = time.time()
    for step in range(min(steps, stop_after or steps)):
        for pg in opt.param_groups:
            pg["lr"] = lr_at(step, steps, lr, warm=300)
        idx = torch.randint(0, n, (batch,), generator=g)
        loss, mse = v_prediction_loss(dit, ac, rgb[idx], prompt[idx], target[idx], label[idx], g)
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(dit.parameters(), 1.0)
        opt.step()
        d = min(ema_decay, (1 + step) / (10 + step))
        with torch.no_grad():
            for k, p in dit.state_dict().items():
                ema[k].mul_(d).add_(p.detach(), alpha=1 - d)
        if step % 200 == 0 or step == steps - 1:
            log(f"dit step {step} loss {loss.item():.4f} mse {mse.item():.4f} ({time.time() - t0:.0f}s)")
        if (step + 1) % 250 == 0 and step + 1 < steps:  # an interrupted run still leaves a usable model
            save(ema)
    return ema


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", nargs="+", default=["toy_data"], help="toy-data roots (their train splits)")
    ap.add_argument("--out", default="train_out")
    ap.add_argument("--resolution", type=int, default=128)
    ap.add_argument("--flow-scale", type=float, default=20.0)
    ap.add_argument("--vae-steps", type=int, default=1500)
    ap.add_argument("--vae-batch", type=int, default=16)
    ap.add_argument("--vae-crop", type=int, default=32)
    ap.add_argument("--vae-only", action="store_true")
    ap.add_argument("--decoder-steps", type=int, default=1500)
    ap.add_argument("--decoder-noise", type=float, default=0.1)
    ap.add_argument("--decoder-out", default="vae.pt")
    ap.add_argument("--decoder-only", action="store_true", help="only stage 3, on OUT/vae_stage1.pt")
    ap.add_argument("--dit-steps", type=int, default=2500)
    ap.add_argument("--dit-batch", type=int, default=24)
    ap.add_argument("--dit-lr", type=float, default=8e-4)
    ap.add_argument("--dit-stop-after", type=int, help="stop the DiT stage after this many steps of its "
                    "--dit-steps schedule (what a checkpoint saved every 250 steps holds)")
    ap.add_argument("--hidden", type=int, default=128)
    ap.add_argument("--depth", type=int, default=4)
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--vae-channels", default="16,32,32")
    ap.add_argument("--groups", type=int, default=8)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--skip-vae", action="store_true", help="reuse OUT/vae_stage1.pt")
    a = ap.parse_args()
    log = start_run(a)

    t_start = time.time()
    samples = data.load_all(a.data, "train", a.resolution, a.flow_scale)
    log(f"data: {', '.join(f'{k} {len(v)}' for k, v in samples.items())}")
    chans = [int(c) for c in a.vae_channels.split(",")]
    vae_cfg = {"_class_name": "AutoencoderKL", "in_channels": 3, "out_channels": 3, "latent_channels": 4,
               "block_out_channels": chans, "layers_per_block": 1, "norm_num_groups": a.groups, "norm_eps": 1e-6,
               "act_fn": "silu", "down_block_types": ["DownEncoderBlock2D"] * len(chans),
               "up_block_types": ["UpDecoderBlock2D"] * len(chans), "sample_size": a.resolution,
               "scaling_factor": 1.0, "use_quant_conv": True, "use_post_quant_conv": True,
               "mid_block_add_attention": True, "force_upcast": True}
    vae = M.VAE(vae_cfg)
    stage1_path = os.path.join(a.out, "vae_stage1.pt")
    if a.skip_vae or a.decoder_only:
        vae.load_state_dict(torch.load(stage1_path))
    else:
        imgs, wts, white = vae_images(samples)
        log(f"vae: {sum(p.numel() for p in vae.parameters())} parameters, {imgs.shape[0]} images")
        train_vae(vae, imgs, wts, white, a.vae_steps, a.vae_batch, 2e-3, a.vae_crop, log)
        torch.save(vae.state_dict(), stage1_path)
        log(f"vae stage {time.time() - t_start:.0f}s")
        if a.vae_only:
            return
    if a.decoder_only:
        decoder_stage(vae, samples, a, log)
        return
    vae.eval()
    for p in vae.parameters():
        p.requires_grad_(False)
    t_vae = time.time()
    rgb, prompt, target, label = build_latent_set(vae, samples)
    # Unit-variance latents: the engine multiplies the mean by scaling_factor.
    sf = float(1.0 / torch.cat([rgb, prompt, target]).std())
    vae_cfg["scaling_factor"] = sf
    lat = (rgb * sf, prompt * sf, target * sf, label)
    log(f"latents: {label.shape[0]} rows, shape {tuple(rgb.shape[1:])}, scaling_factor {sf:.5f} "
        f"({time.time() - t_vae:.0f}s)")
    lc, lh = rgb.shape[1], rgb.shape[2]
    dit_cfg = {"input_size": lh, "patch_size": 2, "in_channels": 3 * lc, "out_channels": 2 * lc,
               "hidden_size": a.hidden, "depth": a.depth, "num_heads": a.heads, "num_experts": 4, "top_k": 2,
               "label_table_rows": 1005, "layernorm_eps": 1e-6, "mlp_hidden": 4 * a.hidden}
    dit = M.DiT(dit_cfg)
    log(f"dit: {sum(p.numel() for p in dit.parameters())} parameters")
    cfg = {"dit": dit_cfg, "vae": vae_cfg, "scheduler": M.SCHEDULER, "resolution": a.resolution,
           "flow_scale": a.flow_scale}
    json.dump(cfg, open(os.path.join(a.out, "config.json"), "w"), indent=1)
    save = lambda ema: torch.save(ema, os.path.join(a.out, "dit.pt"))
    save(train_dit(dit, lat, a.dit_steps, a.dit_batch, a.dit_lr, log, save, a.dit_stop_after))
    log(f"dit stage done at {time.time() - t_start:.0f}s (vae stage {t_vae - t_start:.0f}s)")
    decoder_stage(vae, samples, a, log)
    log(f"done in {time.time() - t_start:.0f}s")


def decoder_stage(vae, samples, a, log):
    t0 = time.time()
    finetune_decoder(vae, samples, a.decoder_steps, log, a.decoder_noise)
    torch.save(vae.state_dict(), os.path.join(a.out, a.decoder_out))
    log(f"decoder stage {time.time() - t0:.0f}s")


if __name__ == "__main__":
    main()
