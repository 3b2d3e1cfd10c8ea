"""The generalist's two networks as torch modules whose state-dict names are the engine's:
the authors' DiT-MoE keys (SPEC.md "State-dict keys") and diffusers AutoencoderKL keys (current
attention spelling), so a trained state dict is exported as is."""
import math

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

TASK_LABELS = {"depth": 1000, "amodal": 1001, "flow_x": 1002, "flow_y": 1003}


# ----------------------------------------------------------------------------- DiT-MoE


def sincos_pos_embed(dim, grid):
    """MAE 2-D sin-cos table [grid*grid, dim]: first half encodes the column, second the row."""
    def one_axis(d, pos):
        omega = 1.0 / 10000 ** (np.arange(d // 2, dtype=np.float64) / (d / 2.0))
        out = np.outer(pos.reshape(-1), omega)
        return np.concatenate([np.sin(out), np.cos(out)], axis=1)
    gh, gw = np.meshgrid(np.arange(grid, dtype=np.float64), np.arange(grid, dtype=np.float64), indexing="ij")
    return np.concatenate([one_axis(dim // 2, gw), one_axis(dim // 2, gh)], axis=1).astype(np.float32)


class PatchEmbeds(nn.Module):
    def __init__(self, cin, d, p):
        super().__init__()
        for j in range(1, 5):
            setattr(self, f"conv_in_{j}", nn.Conv2d(cin, d, p, stride=p))


class XEmbedder(nn.Module):
    def __init__(self, cin, d, p):
        super().__init__()
        self.proj = PatchEmbeds(cin, d, p)

    def forward(self, x, y):
        sel = (y - 1000).long()
        out = None
        for j in range(4):
            h = getattr(self.proj, f"conv_in_{j + 1}")(x).flatten(2).transpose(1, 2)  # [B, T, D]
            m = (sel == j).to(h.dtype)[:, None, None]
            out = h * m if out is None else out + h * m
        return out


class TimestepEmbedder(nn.Module):
    def __init__(self, d, freq=256):
        super().__init__()
        self.freq = freq
        self.mlp = nn.Sequential(nn.Linear(freq, d), nn.SiLU(), nn.Linear(d, d))

    def forward(self, t):
        half = self.freq // 2
        freqs = torch.exp(-math.log(10000) * torch.arange(half, dtype=torch.float32, device=t.device) / half)
        args = t.float()[:, None] * freqs[None]
        return self.mlp(torch.cat([torch.cos(args), torch.sin(args)], dim=-1))


class LabelEmbedder(nn.Module):
    def __init__(self, rows, d):
        super().__init__()
        self.embedding_table = nn.Embedding(rows, d)


class Attention(nn.Module):
    def __init__(self, d, heads):
        super().__init__()
        self.h = heads
        self.qkv = nn.Linear(d, 3 * d)
        self.proj = nn.Linear(d, d)

    def forward(self, x):
        B, N, D = x.shape
        qkv = self.qkv(x).reshape(B, N, 3, self.h, D // self.h).permute(2, 0, 3, 1, 4)
        o = F.scaled_dot_product_attention(qkv[0], qkv[1], qkv[2])
        return self.proj(o.transpose(1, 2).reshape(B, N, D))


class Mlp(nn.Module):
    def __init__(self, d, hidden):
        super().__init__()
        self.fc1 = nn.Linear(d, hidden)
        self.fc2 = nn.Linear(hidden, d)

    def forward(self, x):
        return self.fc2(F.gelu(self.fc1(x), approximate="tanh"))


class MoE(nn.Module):
    """Top-k of softmax gate probabilities, not renormalised (SPEC.md)."""

    def __init__(self, d, hidden, experts, top_k):
        super().__init__()
        self.k = top_k
        self.gate = nn.Linear(d, experts, bias=False)
        self.experts = nn.ModuleList([Mlp(d, hidden) for _ in range(experts)])
        self.aux = None

    def forward(self, x):
        probs = torch.softmax(self.gate(x).float(), dim=-1)
        w, idx = torch.topk(probs, self.k, dim=-1)
        weights = torch.zeros_like(probs).scatter(-1, idx, w)  # [B, N, E]
        # Switch-style balance term: fraction routed times mean probability, per expert.
        E = probs.shape[-1]
        routed = torch.zeros_like(probs).scatter(-1, idx, 1.0).mean(dim=(0, 1)) / self.k
        self.aux = E * (routed * probs.mean(dim=(0, 1))).sum()
        # Route: each expert runs only on the tokens that chose it.
        B, N, D = x.shape
        xf = x.reshape(-1, D)
        wf = weights.reshape(-1, E)
        out = torch.zeros_like(xf)
        for e, ex in enumerate(self.experts):
            rows = (wf[:, e] > 0).nonzero(as_tuple=True)[0]
            if rows.numel():
                out = out.index_add(0, rows, wf[rows, e:e + 1].to(x.dtype) * ex(xf[rows]))
        return out.reshape(B, N, D)


def modulate(x, shift, scale):
    return x * (1 + scale[:, None]) + shift[:, None]


class Block(nn.Module):
    def __init__(self, d, heads, hidden, experts, top_k, eps):
        super().__init__()
        self.eps = eps
        self.attn = Attention(d, heads)
        self.moe = MoE(d, hidden, experts, top_k)
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(d, 6 * d))

    def forward(self, x, c):
        D = x.shape[-1]
        sm, cm, gm, sf, cf, gf = self.adaLN_modulation(c).chunk(6, dim=1)
        x = x + gm[:, None] * self.attn(modulate(F.layer_norm(x, (D,), eps=self.eps), sm, cm))
        return x + gf[:, None] * self.moe(modulate(F.layer_norm(x, (D,), eps=self.eps), sf, cf))


class FinalLayer(nn.Module):
    def __init__(self, d, p, cout, eps):
        super().__init__()
        self.eps = eps
        self.linear = nn.Linear(d, p * p * cout)
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(d, 2 * d))

    def forward(self, x, c):
        shift, scale = self.adaLN_modulation(c).chunk(2, dim=1)
        return self.linear(modulate(F.layer_norm(x, (x.shape[-1],), eps=self.eps), shift, scale))


class DiT(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.cfg = cfg
        d, p = cfg["hidden_size"], cfg["patch_size"]
        grid = cfg["input_size"] // p
        self.x_embedder = XEmbedder(cfg["in_channels"], d, p)
        self.pos_embed = nn.Parameter(torch.from_numpy(sincos_pos_embed(d, grid))[None], requires_grad=False)
        self.t_embedder = TimestepEmbedder(d)
        self.y_embedder = LabelEmbedder(cfg["label_table_rows"], d)
        self.blocks = nn.ModuleList([Block(d, cfg["num_heads"], cfg["mlp_hidden"], cfg["num_experts"], cfg["top_k"],
                                           cfg["layernorm_eps"]) for _ in range(cfg["depth"])])
        self.final_layer = FinalLayer(d, p, cfg["out_channels"], cfg["layernorm_eps"])
        self._init()

    def _init(self):
        """DiT's initialisation: Xavier linears, adaLN-Zero (blocks start as the identity)."""
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
        for j in range(1, 5):
            w = getattr(self.x_embedder.proj, f"conv_in_{j}").weight
            nn.init.xavier_uniform_(w.view(w.shape[0], -1))
        nn.init.normal_(self.y_embedder.embedding_table.weight, std=0.02)
        nn.init.normal_(self.t_embedder.mlp[0].weight, std=0.02)
        nn.init.normal_(self.t_embedder.mlp[2].weight, std=0.02)
        for b in self.blocks:
            nn.init.zeros_(b.adaLN_modulation[1].weight)
            nn.init.zeros_(b.adaLN_modulation[1].bias)
        for lin in (self.final_layer.adaLN_modulation[1], self.final_layer.linear):
            nn.init.zeros_(lin.weight)
            nn.init.zeros_(lin.bias)

    def aux_loss(self):
        return sum(b.moe.aux for b in self.blocks) / len(self.blocks)

    def forward(self, x, t, y):
        h = self.x_embedder(x, y) + self.pos_embed
        c = self.t_embedder(t) + self.y_embedder.embedding_table(y.long())
        for b in self.blocks:
            h = b(h, c)
        h = self.final_layer(h, c)
        B, T, _ = h.shape
        g = int(math.isqrt(T))
        p, C = self.cfg["patch_size"], self.cfg["out_channels"]
        return h.reshape(B, g, g, p, p, C).permute(0, 5, 1, 3, 2, 4).reshape(B, C, g * p, g * p)


# ----------------------------------------------------------------------------- AutoencoderKL (diffusers names)


class Resnet(nn.Module):
    def __init__(self, cin, cout, groups, eps):
        super().__init__()
        self.norm1 = nn.GroupNorm(groups, cin, eps=eps)
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=1)
        self.norm2 = nn.GroupNorm(groups, cout, eps=eps)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1)
        if cin != cout:
            self.conv_shortcut = nn.Conv2d(cin, cout, 1)

    def forward(self, x):
        h = self.conv1(F.silu(self.norm1(x)))
        h = self.conv2(F.silu(self.norm2(h)))
        return (self.conv_shortcut(x) if hasattr(self, "conv_shortcut") else x) + h


class MidAttention(nn.Module):
    def __init__(self, c, groups, eps):
        super().__init__()
        self.group_norm = nn.GroupNorm(groups, c, eps=eps)
        self.to_q, self.to_k, self.to_v = nn.Linear(c, c), nn.Linear(c, c), nn.Linear(c, c)
        self.to_out = nn.ModuleList([nn.Linear(c, c)])

    def forward(self, x):
        B, C, H, W = x.shape
        h = self.group_norm(x).reshape(B, C, H * W).transpose(1, 2)
        o = F.scaled_dot_product_attention(self.to_q(h)[:, None], self.to_k(h)[:, None], self.to_v(h)[:, None])[:, 0]
        return x + self.to_out[0](o).transpose(1, 2).reshape(B, C, H, W)


class Mid(nn.Module):
    def __init__(self, c, groups, eps):
        super().__init__()
        self.resnets = nn.ModuleList([Resnet(c, c, groups, eps), Resnet(c, c, groups, eps)])
        self.attentions = nn.ModuleList([MidAttention(c, groups, eps)])

    def forward(self, x):
        return self.resnets[1](self.attentions[0](self.resnets[0](x)))


class ConvHolder(nn.Module):
    def __init__(self, conv):
        super().__init__()
        self.conv = conv


class DownBlock(nn.Module):
    def __init__(self, cin, cout, layers, down, groups, eps):
        super().__init__()
        self.resnets = nn.ModuleList([Resnet(cin if j == 0 else cout, cout, groups, eps) for j in range(layers)])
        if down:
            self.downsamplers = nn.ModuleList([ConvHolder(nn.Conv2d(cout, cout, 3, stride=2))])

    def forward(self, x):
        for r in self.resnets:
            x = r(x)
        if hasattr(self, "downsamplers"):
            x = self.downsamplers[0].conv(F.pad(x, (0, 1, 0, 1)))
        return x


class UpBlock(nn.Module):
    def __init__(self, cin, cout, layers, up, groups, eps):
        super().__init__()
        self.resnets = nn.ModuleList([Resnet(cin if j == 0 else cout, cout, groups, eps) for j in range(layers + 1)])
        if up:
            self.upsamplers = nn.ModuleList([ConvHolder(nn.Conv2d(cout, cout, 3, padding=1))])

    def forward(self, x):
        for r in self.resnets:
            x = r(x)
        if hasattr(self, "upsamplers"):
            x = self.upsamplers[0].conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))
        return x


class Encoder(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        ch, L, g, eps = cfg["block_out_channels"], cfg["layers_per_block"], cfg["norm_num_groups"], cfg["norm_eps"]
        self.conv_in = nn.Conv2d(cfg["in_channels"], ch[0], 3, padding=1)
        self.down_blocks = nn.ModuleList([DownBlock(ch[max(i - 1, 0)], c, L, i < len(ch) - 1, g, eps)
                                          for i, c in enumerate(ch)])
        self.mid_block = Mid(ch[-1], g, eps)
        self.conv_norm_out = nn.GroupNorm(g, ch[-1], eps=eps)
        self.conv_out = nn.Conv2d(ch[-1], 2 * cfg["latent_channels"], 3, padding=1)

    def forward(self, x):
        h = self.conv_in(x)
        for b in self.down_blocks:
            h = b(h)
        return self.conv_out(F.silu(self.conv_norm_out(self.mid_block(h))))


class Decoder(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        ch, L, g, eps = cfg["block_out_channels"], cfg["layers_per_block"], cfg["norm_num_groups"], cfg["norm_eps"]
        rc = ch[::-1]
        self.conv_in = nn.Conv2d(cfg["latent_channels"], rc[0], 3, padding=1)
        self.mid_block = Mid(rc[0], g, eps)
        self.up_blocks = nn.ModuleList([UpBlock(rc[max(i - 1, 0)], c, L, i < len(rc) - 1, g, eps)
                                        for i, c in enumerate(rc)])
        self.conv_norm_out = nn.GroupNorm(g, ch[0], eps=eps)
        self.conv_out = nn.Conv2d(ch[0], cfg["out_channels"], 3, padding=1)

    def forward(self, z):
        h = self.mid_block(self.conv_in(z))
        for b in self.up_blocks:
            h = b(h)
        return self.conv_out(F.silu(self.conv_norm_out(h)))


class VAE(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.cfg = cfg
        self.encoder = Encoder(cfg)
        self.decoder = Decoder(cfg)
        lc = cfg["latent_channels"]
        self.quant_conv = nn.Conv2d(2 * lc, 2 * lc, 1)
        self.post_quant_conv = nn.Conv2d(lc, lc, 1)

    def moments(self, x):
        m = self.quant_conv(self.encoder(x))
        lc = self.cfg["latent_channels"]
        return m[:, :lc], m[:, lc:]

    def encode(self, x):
        """The engine's latent: mean x scaling_factor."""
        return self.moments(x)[0] * self.cfg["scaling_factor"]

    def decode_raw(self, z):
        return self.decoder(self.post_quant_conv(z))

    def decode(self, z):
        return self.decode_raw(z / self.cfg["scaling_factor"])


# ----------------------------------------------------------------------------- DDIM (SD-2 defaults, eta 0)


SCHEDULER = {"_class_name": "DDIMScheduler", "beta_start": 0.00085, "beta_end": 0.012,
             "beta_schedule": "scaled_linear", "num_train_timesteps": 1000, "prediction_type": "v_prediction",
             "set_alpha_to_one": False, "steps_offset": 1, "clip_sample": False, "timestep_spacing": "leading",
             "trained_betas": None}


def alphas_cumprod():
    betas = torch.linspace(0.00085 ** 0.5, 0.012 ** 0.5, 1000, dtype=torch.float32) ** 2
    return torch.cumprod(1.0 - betas, 0)


def ddim_sample(dit, cond, y, noise, steps):
    """cond [B, 8, h, w] (rgb and prompt latents), y [B]: the denoised latent."""
    ac = alphas_cumprod()
    ratio = 1000 // steps
    ts = [int(i * ratio) + 1 for i in range(steps)][::-1]
    x = noise
    for t in ts:
        a_t = ac[t]
        prev = t - ratio
        a_p = ac[prev] if prev >= 0 else ac[0]
        v = dit(torch.cat([cond, x], 1), torch.full((x.shape[0],), float(t)), y)[:, :4]
        x0 = a_t.sqrt() * x - (1 - a_t).sqrt() * v
        eps = a_t.sqrt() * v + (1 - a_t).sqrt() * x
        x = a_p.sqrt() * x0 + (1 - a_p).sqrt() * eps
    return x
