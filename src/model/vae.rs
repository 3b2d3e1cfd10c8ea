//! The Stable-Diffusion-2 AutoencoderKL (diffusers layout): encoder to the latent mean, decoder
//! back to pixels. Any block_out_channels / layers_per_block / group count.

use super::loader::Loader;
use crate::backend::{Act, Backend, Conv2d};
use crate::error::{Error, Result};
use crate::weights::config::VaeConfig;
use crate::weights::Weights;

struct Conv<B: Backend> {
    w: B::W,
    b: B::W,
}

struct Norm<B: Backend> {
    gamma: B::W,
    beta: B::W,
}

struct Resnet<B: Backend> {
    norm1: Norm<B>,
    conv1: Conv<B>,
    norm2: Norm<B>,
    conv2: Conv<B>,
    shortcut: Option<Conv<B>>,
}

/// Single-head self-attention over the H*W positions; q, k, v packed into one linear.
struct Attention<B: Backend> {
    norm: Norm<B>,
    qkv_w: B::W,
    qkv_b: B::W,
    out_w: B::W,
    out_b: B::W,
}

struct Mid<B: Backend> {
    res0: Resnet<B>,
    attn: Option<Attention<B>>,
    res1: Resnet<B>,
}

struct Stage<B: Backend> {
    resnets: Vec<Resnet<B>>,
    /// Down- or upsampling conv (all stages but the last).
    resample: Option<Conv<B>>,
}

pub struct Vae<B: Backend> {
    pub cfg: VaeConfig,
    enc_conv_in: Conv<B>,
    enc_stages: Vec<Stage<B>>,
    enc_mid: Mid<B>,
    enc_norm_out: Norm<B>,
    enc_conv_out: Conv<B>,
    quant_conv: Option<Conv<B>>,
    post_quant_conv: Option<Conv<B>>,
    dec_conv_in: Conv<B>,
    dec_mid: Mid<B>,
    dec_stages: Vec<Stage<B>>,
    dec_norm_out: Norm<B>,
    dec_conv_out: Conv<B>,
}

/// Intermediates of encode/decode (fixtures and debugging).
#[derive(Default)]
pub struct VaeProbe {
    pub enc_down0: Option<crate::tensor::Tensor>,
    pub enc_mid: Option<crate::tensor::Tensor>,
    pub moments: Option<crate::tensor::Tensor>,
    pub dec_post_quant: Option<crate::tensor::Tensor>,
    pub dec_mid: Option<crate::tensor::Tensor>,
}

fn conv<B: Backend>(ld: &mut Loader<B>, name: &str, o: usize, c: usize, k: usize) -> Result<Conv<B>> {
    Ok(Conv { w: ld.w(&format!("{name}.weight"), &[o, c, k, k])?, b: ld.w(&format!("{name}.bias"), &[o])? })
}

fn norm<B: Backend>(ld: &mut Loader<B>, name: &str, c: usize) -> Result<Norm<B>> {
    Ok(Norm { gamma: ld.w(&format!("{name}.weight"), &[c])?, beta: ld.w(&format!("{name}.bias"), &[c])? })
}

fn resnet<B: Backend>(ld: &mut Loader<B>, name: &str, cin: usize, cout: usize) -> Result<Resnet<B>> {
    Ok(Resnet {
        norm1: norm(ld, &format!("{name}.norm1"), cin)?,
        conv1: conv(ld, &format!("{name}.conv1"), cout, cin, 3)?,
        norm2: norm(ld, &format!("{name}.norm2"), cout)?,
        conv2: conv(ld, &format!("{name}.conv2"), cout, cout, 3)?,
        shortcut: if cin != cout { Some(conv(ld, &format!("{name}.conv_shortcut"), cout, cin, 1)?) } else { None },
    })
}

fn mid<B: Backend>(ld: &mut Loader<B>, name: &str, c: usize, attention: bool) -> Result<Mid<B>> {
    let res0 = resnet(ld, &format!("{name}.resnets.0"), c, c)?;
    let attn = if attention {
        let a = format!("{name}.attentions.0");
        let qkv_w = ld.cat(&["to_q", "to_k", "to_v"].map(|p| format!("{a}.{p}.weight")), &[c, c])?;
        let qkv_b = ld.cat(&["to_q", "to_k", "to_v"].map(|p| format!("{a}.{p}.bias")), &[c])?;
        Some(Attention {
            norm: norm(ld, &format!("{a}.group_norm"), c)?,
            qkv_w,
            qkv_b,
            out_w: ld.w(&format!("{a}.to_out.0.weight"), &[c, c])?,
            out_b: ld.w(&format!("{a}.to_out.0.bias"), &[c])?,
        })
    } else {
        None
    };
    let res1 = resnet(ld, &format!("{name}.resnets.1"), c, c)?;
    Ok(Mid { res0, attn, res1 })
}

/// Rename the pre-0.14 diffusers attention names (`query`, `key`, `value`, `proj_attn`) to the
/// current ones (`to_q`, `to_k`, `to_v`, `to_out.0`), as diffusers does on load.
pub fn normalize_names(w: &mut Weights) {
    let renames: Vec<(String, String)> = w
        .names()
        .iter()
        .filter_map(|n| {
            let (head, tail) = n.rsplit_once('.')?; // tail = weight|bias
            let (base, leaf) = head.rsplit_once('.')?;
            if !base.ends_with("attentions.0") {
                return None;
            }
            let new = match leaf {
                "query" => "to_q",
                "key" => "to_k",
                "value" => "to_v",
                "proj_attn" => "to_out.0",
                _ => return None,
            };
            Some((n.clone(), format!("{base}.{new}.{tail}")))
        })
        .collect();
    if renames.is_empty() {
        return;
    }
    let mut out = Weights::new(w.source.clone(), vec![]);
    for (name, t) in w.iter() {
        let new = renames.iter().find(|(o, _)| o == name).map(|(_, n)| n.clone()).unwrap_or(name.clone());
        out.insert(new, t.clone());
    }
    *w = out;
}

impl<B: Backend> Vae<B> {
    pub fn load(backend: &B, cfg: &VaeConfig, weights: &Weights) -> Result<Self> {
        let mut weights = weights.clone();
        normalize_names(&mut weights);
        let mut ld = Loader::new(backend, &weights, "VAE");
        let ch = &cfg.block_out_channels;
        let (nb, lpb, lat) = (ch.len(), cfg.layers_per_block, cfg.latent_channels);
        let enc_conv_in = conv(&mut ld, "encoder.conv_in", ch[0], cfg.in_channels, 3)?;
        let mut enc_stages = Vec::new();
        let mut cin = ch[0];
        for (i, &cout) in ch.iter().enumerate() {
            let mut resnets = Vec::new();
            for j in 0..lpb {
                resnets.push(resnet(
                    &mut ld,
                    &format!("encoder.down_blocks.{i}.resnets.{j}"),
                    if j == 0 { cin } else { cout },
                    cout,
                )?);
            }
            let resample = if i + 1 < nb {
                Some(conv(&mut ld, &format!("encoder.down_blocks.{i}.downsamplers.0.conv"), cout, cout, 3)?)
            } else {
                None
            };
            enc_stages.push(Stage { resnets, resample });
            cin = cout;
        }
        let top = ch[nb - 1];
        let enc_mid = mid(&mut ld, "encoder.mid_block", top, cfg.mid_block_add_attention)?;
        let enc_norm_out = norm(&mut ld, "encoder.conv_norm_out", top)?;
        let enc_conv_out = conv(&mut ld, "encoder.conv_out", 2 * lat, top, 3)?;
        let quant_conv =
            if cfg.use_quant_conv { Some(conv(&mut ld, "quant_conv", 2 * lat, 2 * lat, 1)?) } else { None };
        let post_quant_conv =
            if cfg.use_post_quant_conv { Some(conv(&mut ld, "post_quant_conv", lat, lat, 1)?) } else { None };
        let dec_conv_in = conv(&mut ld, "decoder.conv_in", top, lat, 3)?;
        let dec_mid = mid(&mut ld, "decoder.mid_block", top, cfg.mid_block_add_attention)?;
        let mut dec_stages = Vec::new();
        let mut cin = top;
        for (i, &cout) in ch.iter().rev().enumerate() {
            let mut resnets = Vec::new();
            for j in 0..=lpb {
                resnets.push(resnet(
                    &mut ld,
                    &format!("decoder.up_blocks.{i}.resnets.{j}"),
                    if j == 0 { cin } else { cout },
                    cout,
                )?);
            }
            let resample = if i + 1 < nb {
                Some(conv(&mut ld, &format!("decoder.up_blocks.{i}.upsamplers.0.conv"), cout, cout, 3)?)
            } else {
                None
            };
            dec_stages.push(Stage { resnets, resample });
            cin = cout;
        }
        let dec_norm_out = norm(&mut ld, "decoder.conv_norm_out", ch[0])?;
        let dec_conv_out = conv(&mut ld, "decoder.conv_out", cfg.out_channels, ch[0], 3)?;
        ld.finish()?;
        Ok(Vae {
            cfg: cfg.clone(),
            enc_conv_in,
            enc_stages,
            enc_mid,
            enc_norm_out,
            enc_conv_out,
            quant_conv,
            post_quant_conv,
            dec_conv_in,
            dec_mid,
            dec_stages,
            dec_norm_out,
            dec_conv_out,
        })
    }

    fn eps(&self) -> f32 {
        self.cfg.norm_eps as f32
    }

    fn resnet(&self, be: &B, r: &Resnet<B>, x: &B::T) -> Result<B::T> {
        let g = self.cfg.norm_num_groups;
        let h = be.group_norm(x, &r.norm1.gamma, &r.norm1.beta, g, self.eps(), true)?;
        let h = be.conv2d(&h, &r.conv1.w, Some(&r.conv1.b), Conv2d::same3x3())?;
        let h = be.group_norm(&h, &r.norm2.gamma, &r.norm2.beta, g, self.eps(), true)?;
        let h = be.conv2d(&h, &r.conv2.w, Some(&r.conv2.b), Conv2d::same3x3())?;
        match &r.shortcut {
            Some(s) => be.add(&be.conv2d(x, &s.w, Some(&s.b), Conv2d::pointwise())?, &h),
            None => be.add(x, &h),
        }
    }

    fn attention(&self, be: &B, a: &Attention<B>, x: &B::T) -> Result<B::T> {
        let s = be.shape(x).to_vec(); // [N, C, H, W]
        let h = be.group_norm(x, &a.norm.gamma, &a.norm.beta, self.cfg.norm_num_groups, self.eps(), false)?;
        let tok = be.nchw_to_tokens(&h)?; // [N, HW, C]
        let qkv = be.linear(&tok, &a.qkv_w, Some(&a.qkv_b), Act::None)?; // [N, HW, 3C]
        let att = be.attention(&qkv, 1)?; // [N, HW, C]
        let out = be.linear(&att, &a.out_w, Some(&a.out_b), Act::None)?;
        let out = be.tokens_to_nchw(&out, s[2], s[3])?;
        be.add(&out, x)
    }

    fn mid(&self, be: &B, m: &Mid<B>, x: &B::T) -> Result<B::T> {
        let mut h = self.resnet(be, &m.res0, x)?;
        if let Some(a) = &m.attn {
            h = self.attention(be, a, &h)?;
        }
        self.resnet(be, &m.res1, &h)
    }

    /// Images [N, 3, H, W] in [-1, 1] -> scaled latent mean [N, latent, H/f, W/f].
    pub fn encode(&self, be: &B, x: &B::T, mut probe: Option<&mut VaeProbe>) -> Result<B::T> {
        let s = be.shape(x).to_vec();
        let f = self.cfg.downscale();
        if s.len() != 4 || s[1] != self.cfg.in_channels || s[2] % f != 0 || s[3] % f != 0 || s[2] == 0 || s[3] == 0 {
            return Err(Error::Shape(format!(
                "vae encode: input {s:?} must be [N, {}, H, W] with H and W multiples of {f}",
                self.cfg.in_channels
            )));
        }
        let mut h = be.conv2d(x, &self.enc_conv_in.w, Some(&self.enc_conv_in.b), Conv2d::same3x3())?;
        for (i, st) in self.enc_stages.iter().enumerate() {
            for r in &st.resnets {
                h = self.resnet(be, r, &h)?;
            }
            if let Some(c) = &st.resample {
                h = be.conv2d(&h, &c.w, Some(&c.b), Conv2d::down3x3())?;
            }
            if i == 0 {
                if let Some(p) = probe.as_deref_mut() {
                    p.enc_down0 = Some(be.download(&h)?);
                }
            }
        }
        h = self.mid(be, &self.enc_mid, &h)?;
        if let Some(p) = probe.as_deref_mut() {
            p.enc_mid = Some(be.download(&h)?);
        }
        h = be.group_norm(
            &h,
            &self.enc_norm_out.gamma,
            &self.enc_norm_out.beta,
            self.cfg.norm_num_groups,
            self.eps(),
            true,
        )?;
        h = be.conv2d(&h, &self.enc_conv_out.w, Some(&self.enc_conv_out.b), Conv2d::same3x3())?;
        if let Some(q) = &self.quant_conv {
            h = be.conv2d(&h, &q.w, Some(&q.b), Conv2d::pointwise())?;
        }
        if let Some(p) = probe.as_deref_mut() {
            p.moments = Some(be.download(&h)?);
        }
        let mean = be.slice_channels(&h, 0, self.cfg.latent_channels)?;
        be.scale(&mean, self.cfg.scaling_factor as f32)
    }

    /// Scaled latents [N, latent, h, w] -> images [N, 3, h*f, w*f] (no clamping).
    pub fn decode(&self, be: &B, z: &B::T, mut probe: Option<&mut VaeProbe>) -> Result<B::T> {
        let s = be.shape(z).to_vec();
        if s.len() != 4 || s[1] != self.cfg.latent_channels {
            return Err(Error::Shape(format!(
                "vae decode: latent {s:?} must be [N, {}, h, w]",
                self.cfg.latent_channels
            )));
        }
        let mut h = be.scale(z, (1.0 / self.cfg.scaling_factor) as f32)?;
        if let Some(q) = &self.post_quant_conv {
            h = be.conv2d(&h, &q.w, Some(&q.b), Conv2d::pointwise())?;
        }
        if let Some(p) = probe.as_deref_mut() {
            p.dec_post_quant = Some(be.download(&h)?);
        }
        h = be.conv2d(&h, &self.dec_conv_in.w, Some(&self.dec_conv_in.b), Conv2d::same3x3())?;
        h = self.mid(be, &self.dec_mid, &h)?;
        if let Some(p) = probe.as_deref_mut() {
            p.dec_mid = Some(be.download(&h)?);
        }
        for st in &self.dec_stages {
            for r in &st.resnets {
                h = self.resnet(be, r, &h)?;
            }
            if let Some(c) = &st.resample {
                h = be.upsample_conv2d(&h, &c.w, Some(&c.b), Conv2d::same3x3())?;
            }
        }
        h = be.group_norm(
            &h,
            &self.dec_norm_out.gamma,
            &self.dec_norm_out.beta,
            self.cfg.norm_num_groups,
            self.eps(),
            true,
        )?;
        be.conv2d(&h, &self.dec_conv_out.w, Some(&self.dec_conv_out.b), Conv2d::same3x3())
    }
}
