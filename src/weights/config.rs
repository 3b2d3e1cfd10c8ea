//! Model configs: the DiT-MoE shape, the VAE (diffusers `config.json`) and the whole-model
//! `percept.config` object of CONVENTIONS.md. Read from metadata or JSON, else inferred from
//! tensor shapes.

use std::collections::BTreeMap;

use serde_json::{json, Value};

use super::RawTensor;
use crate::error::{Error, Result};

/// The DiT-MoE's shape.
#[derive(Clone, Debug, PartialEq)]
pub struct DitConfig {
    pub input_size: usize,
    pub patch_size: usize,
    pub in_channels: usize,
    pub out_channels: usize,
    pub hidden_size: usize,
    pub depth: usize,
    pub num_heads: usize,
    pub num_experts: usize,
    pub top_k: usize,
    pub label_table_rows: usize,
    pub layernorm_eps: f64,
    /// Hidden width of each expert MLP (4 x hidden in the published model).
    pub mlp_hidden: usize,
    /// Number of per-task patch-embedding convolutions (`conv_in_1..N`).
    pub num_conv_in: usize,
}

impl DitConfig {
    /// The published generalist (`DiTMultiTaskMoE_uc`, 64x64 latents).
    pub fn generalist() -> Self {
        DitConfig {
            input_size: 64,
            patch_size: 2,
            in_channels: 12,
            out_channels: 8,
            hidden_size: 1152,
            depth: 28,
            num_heads: 16,
            num_experts: 8,
            top_k: 2,
            label_table_rows: 1005,
            layernorm_eps: 1e-6,
            mlp_hidden: 4608,
            num_conv_in: 4,
        }
    }
    pub fn head_dim(&self) -> usize {
        self.hidden_size / self.num_heads
    }
    pub fn grid(&self) -> usize {
        self.input_size / self.patch_size
    }
    pub fn num_tokens(&self) -> usize {
        self.grid() * self.grid()
    }
    /// Parse from a JSON object; missing optional fields take the generalist's values.
    pub fn from_json(v: &Value) -> Result<Self> {
        let d = Self::generalist();
        let get = |k: &str, def: usize| -> Result<usize> {
            match v.get(k) {
                None | Some(Value::Null) => Ok(def),
                Some(x) => x.as_u64().map(|x| x as usize).ok_or_else(|| {
                    Error::Config(format!("dit config: \"{k}\" must be a non-negative integer, got {x}"))
                }),
            }
        };
        let hidden = get("hidden_size", d.hidden_size)?;
        let c = DitConfig {
            input_size: get("input_size", d.input_size)?,
            patch_size: get("patch_size", d.patch_size)?,
            in_channels: get("in_channels", d.in_channels)?,
            out_channels: get("out_channels", d.out_channels)?,
            hidden_size: hidden,
            depth: get("depth", d.depth)?,
            num_heads: get("num_heads", d.num_heads)?,
            num_experts: get("num_experts", d.num_experts)?,
            top_k: get("top_k", d.top_k)?,
            label_table_rows: get("label_table_rows", d.label_table_rows)?,
            layernorm_eps: v.get("layernorm_eps").and_then(Value::as_f64).unwrap_or(1e-6),
            mlp_hidden: get("mlp_hidden", 4 * hidden)?,
            num_conv_in: get("num_conv_in", 4)?,
        };
        c.validate()?;
        Ok(c)
    }
    pub fn to_json(&self) -> Value {
        json!({
            "input_size": self.input_size, "patch_size": self.patch_size,
            "in_channels": self.in_channels, "out_channels": self.out_channels,
            "hidden_size": self.hidden_size, "depth": self.depth, "num_heads": self.num_heads,
            "num_experts": self.num_experts, "top_k": self.top_k,
            "label_table_rows": self.label_table_rows, "layernorm_eps": self.layernorm_eps,
            "mlp_hidden": self.mlp_hidden,
        })
    }
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(Error::Config(format!("dit config: {m}")));
        if self.hidden_size == 0 || self.num_heads == 0 || self.hidden_size % self.num_heads != 0 {
            return bad(format!("hidden_size {} is not a multiple of num_heads {}", self.hidden_size, self.num_heads));
        }
        if self.patch_size == 0 || self.input_size % self.patch_size != 0 {
            return bad(format!("input_size {} is not a multiple of patch_size {}", self.input_size, self.patch_size));
        }
        if self.top_k == 0 || self.top_k > self.num_experts {
            return bad(format!("top_k {} must be in 1..={} (num_experts)", self.top_k, self.num_experts));
        }
        if self.hidden_size % 4 != 0 {
            return bad(format!("hidden_size {} must be a multiple of 4 (2-D sin-cos embedding)", self.hidden_size));
        }
        if self.in_channels % 3 != 0 || self.out_channels < self.in_channels / 3 {
            return bad(format!(
                "in_channels {} must be 3 latents (rgb, prompt, noise) and out_channels {} at least one latent",
                self.in_channels, self.out_channels
            ));
        }
        if self.depth == 0 {
            return bad("depth must be at least 1".into());
        }
        Ok(())
    }
    /// Every tensor the model needs, with its shape, in checkpoint order.
    pub fn expected_tensors(&self) -> Vec<(String, Vec<usize>)> {
        let (d, p, t) = (self.hidden_size, self.patch_size, self.num_tokens());
        let mut v: Vec<(String, Vec<usize>)> = vec![];
        for j in 1..=self.num_conv_in {
            v.push((format!("x_embedder.proj.conv_in_{j}.weight"), vec![d, self.in_channels, p, p]));
            v.push((format!("x_embedder.proj.conv_in_{j}.bias"), vec![d]));
        }
        v.push(("pos_embed".into(), vec![1, t, d]));
        v.push(("t_embedder.mlp.0.weight".into(), vec![d, 256]));
        v.push(("t_embedder.mlp.0.bias".into(), vec![d]));
        v.push(("t_embedder.mlp.2.weight".into(), vec![d, d]));
        v.push(("t_embedder.mlp.2.bias".into(), vec![d]));
        v.push(("y_embedder.embedding_table.weight".into(), vec![self.label_table_rows, d]));
        for i in 0..self.depth {
            let b = format!("blocks.{i}");
            v.push((format!("{b}.adaLN_modulation.1.weight"), vec![6 * d, d]));
            v.push((format!("{b}.adaLN_modulation.1.bias"), vec![6 * d]));
            v.push((format!("{b}.attn.qkv.weight"), vec![3 * d, d]));
            v.push((format!("{b}.attn.qkv.bias"), vec![3 * d]));
            v.push((format!("{b}.attn.proj.weight"), vec![d, d]));
            v.push((format!("{b}.attn.proj.bias"), vec![d]));
            v.push((format!("{b}.moe.gate.weight"), vec![self.num_experts, d]));
            for e in 0..self.num_experts {
                let x = format!("{b}.moe.experts.{e}");
                v.push((format!("{x}.fc1.weight"), vec![self.mlp_hidden, d]));
                v.push((format!("{x}.fc1.bias"), vec![self.mlp_hidden]));
                v.push((format!("{x}.fc2.weight"), vec![d, self.mlp_hidden]));
                v.push((format!("{x}.fc2.bias"), vec![d]));
            }
        }
        v.push(("final_layer.adaLN_modulation.1.weight".into(), vec![2 * d, d]));
        v.push(("final_layer.adaLN_modulation.1.bias".into(), vec![2 * d]));
        v.push(("final_layer.linear.weight".into(), vec![p * p * self.out_channels, d]));
        v.push(("final_layer.linear.bias".into(), vec![p * p * self.out_channels]));
        v
    }

    /// Infer the config from tensor shapes (a checkpoint without a config).
    pub fn infer(tensors: &BTreeMap<String, &RawTensor>) -> Result<Self> {
        let shape = |n: &str| -> Result<&Vec<usize>> {
            tensors
                .get(n)
                .map(|t| &t.shape)
                .ok_or_else(|| Error::Config(format!("cannot infer the DiT config: tensor \"{n}\" is missing")))
        };
        let conv = shape("x_embedder.proj.conv_in_1.weight")?;
        if conv.len() != 4 {
            return Err(Error::Config(format!("x_embedder.proj.conv_in_1.weight has shape {conv:?}, expected 4 dims")));
        }
        let (d, cin, p) = (conv[0], conv[1], conv[2]);
        let pos = shape("pos_embed")?;
        let t = *pos.get(1).unwrap_or(&0);
        let grid = (t as f64).sqrt().round() as usize;
        if grid * grid != t {
            return Err(Error::Config(format!("pos_embed has {t} tokens, not a square grid")));
        }
        let depth = (0..).take_while(|i| tensors.contains_key(&format!("blocks.{i}.attn.qkv.weight"))).count();
        let num_experts = shape("blocks.0.moe.gate.weight")?[0];
        let mlp_hidden = shape("blocks.0.moe.experts.0.fc1.weight")?[0];
        let final_w = shape("final_layer.linear.weight")?;
        let num_conv_in =
            (1..).take_while(|j| tensors.contains_key(&format!("x_embedder.proj.conv_in_{j}.weight"))).count();
        // Heads cannot be read off shapes: the published models use head_dim 72.
        let num_heads =
            if d % 72 == 0 { d / 72 } else { (1..=d).rev().find(|h| d % h == 0 && d / h >= 64).unwrap_or(1) };
        let c = DitConfig {
            input_size: grid * p,
            patch_size: p,
            in_channels: cin,
            out_channels: final_w[0] / (p * p),
            hidden_size: d,
            depth,
            num_heads,
            num_experts,
            top_k: 2.min(num_experts),
            label_table_rows: shape("y_embedder.embedding_table.weight")?[0],
            layernorm_eps: 1e-6,
            mlp_hidden,
            num_conv_in,
        };
        c.validate()?;
        Ok(c)
    }
}

/// The SD-2 AutoencoderKL's config (diffusers `vae/config.json`).
#[derive(Clone, Debug, PartialEq)]
pub struct VaeConfig {
    pub in_channels: usize,
    pub out_channels: usize,
    pub latent_channels: usize,
    pub block_out_channels: Vec<usize>,
    pub layers_per_block: usize,
    pub norm_num_groups: usize,
    pub norm_eps: f64,
    pub scaling_factor: f64,
    pub use_quant_conv: bool,
    pub use_post_quant_conv: bool,
    pub mid_block_add_attention: bool,
    /// The raw JSON (written back into converted files).
    pub raw: Value,
}

impl VaeConfig {
    pub fn sd2() -> Self {
        Self::from_json(&json!({
            "in_channels": 3, "out_channels": 3, "latent_channels": 4,
            "block_out_channels": [128, 256, 512, 512], "layers_per_block": 2,
            "norm_num_groups": 32, "scaling_factor": 0.18215, "act_fn": "silu",
            "down_block_types": ["DownEncoderBlock2D", "DownEncoderBlock2D", "DownEncoderBlock2D", "DownEncoderBlock2D"],
            "up_block_types": ["UpDecoderBlock2D", "UpDecoderBlock2D", "UpDecoderBlock2D", "UpDecoderBlock2D"], "sample_size": 768
        }))
        .expect("the SD-2 VAE config is valid")
    }
    pub fn from_json(v: &Value) -> Result<Self> {
        let num = |k: &str, def: usize| -> Result<usize> {
            match v.get(k) {
                None | Some(Value::Null) => Ok(def),
                Some(x) => x.as_u64().map(|x| x as usize).ok_or_else(|| {
                    Error::Config(format!("vae config: \"{k}\" must be a non-negative integer, got {x}"))
                }),
            }
        };
        let blocks: Vec<usize> = match v.get("block_out_channels") {
            None => vec![128, 256, 512, 512],
            Some(a) => a
                .as_array()
                .and_then(|a| a.iter().map(|x| x.as_u64().map(|x| x as usize)).collect::<Option<Vec<_>>>())
                .ok_or_else(|| Error::Config("vae config: \"block_out_channels\" must be a list of integers".into()))?,
        };
        if let Some(act) = v.get("act_fn").and_then(Value::as_str) {
            if act != "silu" {
                return Err(Error::Config(format!("vae config: act_fn \"{act}\" is not supported (only silu)")));
            }
        }
        for key in ["down_block_types", "up_block_types"] {
            if let Some(a) = v.get(key).and_then(Value::as_array) {
                let want = if key == "down_block_types" { "DownEncoderBlock2D" } else { "UpDecoderBlock2D" };
                if a.iter().any(|x| x.as_str() != Some(want)) || a.len() != blocks.len() {
                    return Err(Error::Config(format!(
                        "vae config: {key} must be {} x \"{want}\", got {a:?}",
                        blocks.len()
                    )));
                }
            }
        }
        let groups = num("norm_num_groups", 32)?;
        if blocks.is_empty() || groups == 0 || blocks.iter().any(|c| c % groups != 0) {
            return Err(Error::Config(format!(
                "vae config: block_out_channels {blocks:?} must be non-empty multiples of norm_num_groups {groups}"
            )));
        }
        let c = VaeConfig {
            in_channels: num("in_channels", 3)?,
            out_channels: num("out_channels", 3)?,
            latent_channels: num("latent_channels", 4)?,
            layers_per_block: num("layers_per_block", 2)?,
            norm_num_groups: groups,
            norm_eps: v.get("groupnorm_eps").or(v.get("norm_eps")).and_then(Value::as_f64).unwrap_or(1e-6),
            scaling_factor: v.get("scaling_factor").and_then(Value::as_f64).unwrap_or(0.18215),
            use_quant_conv: v.get("use_quant_conv").and_then(Value::as_bool).unwrap_or(true),
            use_post_quant_conv: v.get("use_post_quant_conv").and_then(Value::as_bool).unwrap_or(true),
            mid_block_add_attention: v.get("mid_block_add_attention").and_then(Value::as_bool).unwrap_or(true),
            block_out_channels: blocks,
            raw: v.clone(),
        };
        Ok(c)
    }
    /// The spatial down-sampling factor between image and latent.
    pub fn downscale(&self) -> usize {
        1 << (self.block_out_channels.len() - 1)
    }
}

/// `percept.config`: what one model file describes.
#[derive(Clone, Debug)]
pub struct ModelConfig {
    pub dit: DitConfig,
    pub vae: Option<VaeConfig>,
    pub scheduler: Option<Value>,
    /// Image resolution the model runs at (512 for the published model).
    pub resolution: usize,
    /// Pixels per flow output unit at `resolution`.
    pub flow_scale: f64,
}

impl ModelConfig {
    pub fn from_json(v: &Value) -> Result<Self> {
        let dit = DitConfig::from_json(
            v.get("dit").ok_or_else(|| Error::Config("percept.config has no \"dit\" object".into()))?,
        )?;
        let vae = match v.get("vae") {
            Some(x) if !x.is_null() => Some(VaeConfig::from_json(x)?),
            _ => None,
        };
        let down = vae.as_ref().map(VaeConfig::downscale).unwrap_or(8);
        Ok(ModelConfig {
            resolution: v
                .get("resolution")
                .and_then(Value::as_u64)
                .map(|x| x as usize)
                .unwrap_or(dit.input_size * down),
            flow_scale: v.get("flow_scale").and_then(Value::as_f64).unwrap_or(75.0),
            scheduler: v.get("scheduler").filter(|s| !s.is_null()).cloned(),
            dit,
            vae,
        })
    }
    pub fn to_json(&self) -> Value {
        let mut o = json!({"dit": self.dit.to_json(), "resolution": self.resolution, "flow_scale": self.flow_scale});
        if let Some(v) = &self.vae {
            o["vae"] = v.raw.clone();
        }
        if let Some(s) = &self.scheduler {
            o["scheduler"] = s.clone();
        }
        o
    }
}
