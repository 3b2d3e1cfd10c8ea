//! FLOP counts of the VAE (2 per multiply-add), walking the same structure as `vae.rs`.

use crate::weights::config::VaeConfig;

fn conv(c_in: usize, c_out: usize, k: usize, h: usize, w: usize) -> f64 {
    2.0 * (c_in * k * k) as f64 * (c_out * h * w) as f64
}

fn resnet(cin: usize, cout: usize, h: usize, w: usize) -> f64 {
    conv(cin, cout, 3, h, w) + conv(cout, cout, 3, h, w) + if cin != cout { conv(cin, cout, 1, h, w) } else { 0.0 }
}

fn mid(c: usize, h: usize, w: usize, attention: bool) -> f64 {
    let l = (h * w) as f64;
    let att = if attention { 2.0 * l * (c * 4 * c) as f64 + 2.0 * 2.0 * l * l * c as f64 } else { 0.0 };
    2.0 * resnet(c, c, h, w) + att
}

/// Encoder FLOPs for an `h` x `w` image, per image.
pub fn vae_encode_flops(cfg: &VaeConfig, h: usize, w: usize) -> f64 {
    let ch = &cfg.block_out_channels;
    let (mut h, mut w) = (h, w);
    let mut total = conv(cfg.in_channels, ch[0], 3, h, w);
    let mut cin = ch[0];
    for (i, &c) in ch.iter().enumerate() {
        for j in 0..cfg.layers_per_block {
            total += resnet(if j == 0 { cin } else { c }, c, h, w);
        }
        if i + 1 < ch.len() {
            h /= 2;
            w /= 2;
            total += conv(c, c, 3, h, w);
        }
        cin = c;
    }
    let top = *ch.last().unwrap();
    total + mid(top, h, w, cfg.mid_block_add_attention) + conv(top, 2 * cfg.latent_channels, 3, h, w)
}

/// Decoder FLOPs for an `h` x `w` output image, per image.
pub fn vae_decode_flops(cfg: &VaeConfig, h: usize, w: usize) -> f64 {
    let ch = &cfg.block_out_channels;
    let f = cfg.downscale();
    let (mut h, mut w) = (h / f, w / f);
    let top = *ch.last().unwrap();
    let mut total = conv(cfg.latent_channels, top, 3, h, w) + mid(top, h, w, cfg.mid_block_add_attention);
    let mut cin = top;
    for (i, &c) in ch.iter().rev().enumerate() {
        for j in 0..=cfg.layers_per_block {
            total += resnet(if j == 0 { cin } else { c }, c, h, w);
        }
        if i + 1 < ch.len() {
            h *= 2;
            w *= 2;
            total += conv(c, c, 3, h, w);
        }
        cin = c;
    }
    total + conv(ch[0], cfg.out_channels, 3, h, w)
}
