//! The DiT-MoE (`DiTMultiTaskMoE_uc`): per-task patch embedding, adaLN-Zero blocks with
//! attention and a top-k mixture of experts, final adaLN layer, unpatchify.

use super::loader::Loader;
use super::task::FIRST_TASK_LABEL;
pub use crate::backend::cpu::timestep::{timestep_features, FREQ_DIM};
use crate::backend::{Act, Backend, MoeWeights, Routing};
use crate::error::{Error, Result};
use crate::tensor::Tensor;
use crate::weights::config::DitConfig;
use crate::weights::Weights;

struct Block<B: Backend> {
    ada_w: B::W,
    ada_b: B::W,
    qkv_w: B::W,
    qkv_b: B::W,
    proj_w: B::W,
    proj_b: B::W,
    moe: B::M,
}

pub struct Dit<B: Backend> {
    pub cfg: DitConfig,
    /// The per-task patch convolutions stacked: [n * D, C, p, p] and [n * D].
    conv_in: (B::W, B::W),
    pos_embed: B::W,
    t_mlp: [B::W; 4],
    y_table: B::W,
    blocks: Vec<Block<B>>,
    final_ada: (B::W, B::W),
    final_linear: (B::W, B::W),
}

/// Intermediates a forward can record (for fixtures and debugging).
#[derive(Default)]
pub struct Probe {
    pub record_blocks: bool,
    pub record_routing: bool,
    pub tokens_embedded: Option<Tensor>,
    pub t_emb: Option<Tensor>,
    pub c: Option<Tensor>,
    /// Output of every block, [B, T, D] each (when `record_blocks`).
    pub block_outs: Vec<Tensor>,
    /// Routing of every layer (when `record_routing`).
    pub routing: Vec<Routing>,
}

impl<B: Backend> Dit<B> {
    /// Bring every parameter to the backend, checking names and shapes against `cfg`.
    pub fn load(backend: &B, cfg: &DitConfig, weights: &Weights) -> Result<Self> {
        cfg.validate()?;
        let (d, p, f) = (cfg.hidden_size, cfg.patch_size, cfg.mlp_hidden);
        let mut ld = Loader::new(backend, weights, "DiT");
        let names = |leaf: &str| -> Vec<String> {
            (1..=cfg.num_conv_in).map(|j| format!("x_embedder.proj.conv_in_{j}.{leaf}")).collect()
        };
        // The patch embedding runs in f32 at every precision (`Backend::patch_embed`).
        let conv_in = (ld.cat_f32(&names("weight"), &[d, cfg.in_channels, p, p])?, ld.cat_f32(&names("bias"), &[d])?);
        let pos_embed = ld.w_f32("pos_embed", &[1, cfg.num_tokens(), d])?;
        let t_mlp = [
            ld.w("t_embedder.mlp.0.weight", &[d, FREQ_DIM])?,
            ld.w("t_embedder.mlp.0.bias", &[d])?,
            ld.w("t_embedder.mlp.2.weight", &[d, d])?,
            ld.w("t_embedder.mlp.2.bias", &[d])?,
        ];
        let y_table = ld.w("y_embedder.embedding_table.weight", &[cfg.label_table_rows, d])?;
        let mut blocks = Vec::with_capacity(cfg.depth);
        for i in 0..cfg.depth {
            let b = format!("blocks.{i}");
            let mut moe = MoeWeights {
                gate: ld.w(&format!("{b}.moe.gate.weight"), &[cfg.num_experts, d])?,
                fc1_w: vec![],
                fc1_b: vec![],
                fc2_w: vec![],
                fc2_b: vec![],
            };
            for e in 0..cfg.num_experts {
                let x = format!("{b}.moe.experts.{e}");
                moe.fc1_w.push(ld.w(&format!("{x}.fc1.weight"), &[f, d])?);
                moe.fc1_b.push(ld.w(&format!("{x}.fc1.bias"), &[f])?);
                moe.fc2_w.push(ld.w(&format!("{x}.fc2.weight"), &[d, f])?);
                moe.fc2_b.push(ld.w(&format!("{x}.fc2.bias"), &[d])?);
            }
            blocks.push(Block {
                ada_w: ld.w(&format!("{b}.adaLN_modulation.1.weight"), &[6 * d, d])?,
                ada_b: ld.w(&format!("{b}.adaLN_modulation.1.bias"), &[6 * d])?,
                qkv_w: ld.w(&format!("{b}.attn.qkv.weight"), &[3 * d, d])?,
                qkv_b: ld.w(&format!("{b}.attn.qkv.bias"), &[3 * d])?,
                proj_w: ld.w(&format!("{b}.attn.proj.weight"), &[d, d])?,
                proj_b: ld.w(&format!("{b}.attn.proj.bias"), &[d])?,
                moe: backend.prepare_moe(&b, moe)?,
            });
        }
        let out = p * p * cfg.out_channels;
        let final_ada = (
            ld.w("final_layer.adaLN_modulation.1.weight", &[2 * d, d])?,
            ld.w("final_layer.adaLN_modulation.1.bias", &[2 * d])?,
        );
        let final_linear = (ld.w("final_layer.linear.weight", &[out, d])?, ld.w("final_layer.linear.bias", &[out])?);
        ld.finish()?;
        Ok(Dit { cfg: cfg.clone(), conv_in, pos_embed, t_mlp, y_table, blocks, final_ada, final_linear })
    }

    /// x [B, in_channels, S, S], per-sample timestep t [B] (any real value) and label y [B]
    /// -> [B, out_channels, S, S].
    pub fn forward(&self, be: &B, x: &B::T, t: &[f32], y: &[i64], probe: Option<&mut Probe>) -> Result<B::T> {
        let t = be.upload(&Tensor::new(vec![t.len()], t.to_vec())?)?;
        self.forward_t(be, x, &t, y, probe)
    }

    /// `forward` with the timesteps already on the backend (f32 [B]): a denoising step then
    /// uploads nothing.
    pub fn forward_t(&self, be: &B, x: &B::T, t: &B::T, y: &[i64], mut probe: Option<&mut Probe>) -> Result<B::T> {
        let cfg = &self.cfg;
        let xs = be.shape(x).to_vec();
        if xs.len() != 4 || xs[1] != cfg.in_channels || xs[2] != cfg.input_size || xs[3] != cfg.input_size {
            return Err(Error::Shape(format!(
                "dit: input {xs:?} must be [B, {}, {}, {}]",
                cfg.in_channels, cfg.input_size, cfg.input_size
            )));
        }
        let bsz = xs[0];
        let nt = be.shape(t).iter().product::<usize>();
        if nt != bsz || y.len() != bsz {
            return Err(Error::Shape(format!(
                "dit: batch {bsz} needs as many timesteps ({nt}) and labels ({})",
                y.len()
            )));
        }
        let (d, eps) = (cfg.hidden_size, cfg.layernorm_eps as f32);
        let mut h = be.patch_embed(
            x,
            &self.conv_in.0,
            &self.conv_in.1,
            cfg.num_conv_in,
            y,
            FIRST_TASK_LABEL,
            &self.pos_embed,
            cfg.patch_size,
        )?; // [B, T, D]
        let tf = be.timestep_features(t)?; // [B, 256]
        let t_hidden = be.linear(&tf, &self.t_mlp[0], Some(&self.t_mlp[1]), Act::Silu)?; // [B, D]
        let t_emb = be.linear(&t_hidden, &self.t_mlp[2], Some(&self.t_mlp[3]), Act::None)?; // [B, D]
        let y_emb = be.embedding(&self.y_table, y)?; // [B, D]
        let c = be.add(&t_emb, &y_emb)?; // [B, D]
        let c_silu = be.act(&c, Act::Silu)?;
        if let Some(p) = probe.as_deref_mut() {
            p.tokens_embedded = Some(be.download(&h)?);
            p.t_emb = Some(be.download(&t_emb)?);
            p.c = Some(be.download(&c)?);
        }
        let tokens = cfg.num_tokens();
        for blk in &self.blocks {
            let mods = be.linear(&c_silu, &blk.ada_w, Some(&blk.ada_b), Act::None)?; // [B, 6D]
            let a_in = be.modulated_layer_norm(&h, &mods, 0, 1, eps)?; // [B, T, D]
            let qkv = be.linear(&a_in, &blk.qkv_w, Some(&blk.qkv_b), Act::None)?; // [B, T, 3D]
            let att = be.attention(&qkv, cfg.num_heads)?; // [B, T, D]
            be.linear_gated_add(&mut h, &att, &blk.proj_w, Some(&blk.proj_b), &mods, 2)?;
            let m_in = be.modulated_layer_norm(&h, &mods, 3, 4, eps)?; // [B, T, D]
            let m_in = be.reshape(m_in, &[bsz * tokens, d])?;
            let record = probe.as_ref().map(|p| p.record_routing).unwrap_or(false);
            let routing = be.moe_gated_add(&mut h, &m_in, &blk.moe, cfg.top_k, &mods, 5, record)?;
            if let Some(p) = probe.as_deref_mut() {
                if let Some(r) = routing {
                    p.routing.push(r);
                }
                if p.record_blocks {
                    p.block_outs.push(be.download(&h)?);
                }
            }
        }
        let mods = be.linear(&c_silu, &self.final_ada.0, Some(&self.final_ada.1), Act::None)?; // [B, 2D]
        let f_in = be.modulated_layer_norm(&h, &mods, 0, 1, eps)?;
        let out = be.linear(&f_in, &self.final_linear.0, Some(&self.final_linear.1), Act::None)?; // [B, T, p*p*C]
        let g = cfg.grid();
        be.unpatchify(&out, cfg.patch_size, cfg.out_channels, g, g) // [B, C, S, S]
    }
}

impl DitConfig {
    /// Multiply-add FLOPs (2 per MAC) of one forward at batch `b`, counting only the top-k
    /// experts each token visits and the unpadded head dim.
    pub fn forward_flops(&self, b: usize) -> f64 {
        let (d, t, f) = (self.hidden_size as f64, self.num_tokens() as f64, self.mlp_hidden as f64);
        let b = b as f64;
        let k = self.top_k as f64;
        let e = self.num_experts as f64;
        let patch = 2.0 * t * d * (self.in_channels * self.patch_size * self.patch_size) as f64;
        let per_block = 2.0 * d * 6.0 * d // adaLN (per sample)
            + 2.0 * t * d * 3.0 * d // qkv
            + 2.0 * 2.0 * t * t * d // scores and PV
            + 2.0 * t * d * d // proj
            + 2.0 * t * d * e // gate
            + k * 2.0 * 2.0 * t * d * f; // experts fc1 + fc2
        let final_layer =
            2.0 * d * 2.0 * d + 2.0 * t * d * (self.patch_size * self.patch_size * self.out_channels) as f64;
        let t_mlp = 2.0 * (256.0 * d + d * d);
        b * (patch + self.depth as f64 * per_block + final_layer + t_mlp)
    }
}
