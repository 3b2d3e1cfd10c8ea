//! GroupNorm (+ SiLU) and LayerNorm with adaLN modulation. Statistics in f64: the means and
//! variances of 2^18-element groups would otherwise lose digits the 1e-5 tolerances need.

use rayon::prelude::*;

use super::elementwise::silu;

/// x [N, C, HW] in place: per (n, group) normalise, then gamma/beta per channel, optional SiLU.
pub fn group_norm(
    x: &mut [f32],
    n: usize,
    c: usize,
    hw: usize,
    groups: usize,
    gamma: &[f32],
    beta: &[f32],
    eps: f32,
    act_silu: bool,
) {
    let cg = c / groups;
    let group_len = cg * hw;
    debug_assert_eq!(x.len(), n * c * hw);
    x.par_chunks_mut(group_len).enumerate().for_each(|(i, g)| {
        let group = i % groups;
        let mean = g.iter().map(|&v| v as f64).sum::<f64>() / group_len as f64;
        let var = g.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / group_len as f64;
        let inv = 1.0 / (var + eps as f64).sqrt();
        for (j, ch) in g.chunks_exact_mut(hw).enumerate() {
            let cidx = group * cg + j;
            let a = (gamma[cidx] as f64 * inv) as f32;
            let b = (beta[cidx] as f64 - mean * gamma[cidx] as f64 * inv) as f32;
            if act_silu {
                ch.iter_mut().for_each(|v| *v = silu(*v * a + b));
            } else {
                ch.iter_mut().for_each(|v| *v = *v * a + b);
            }
        }
    });
    let _ = n;
}

/// x [B, T, D] -> out: `LN(x) * (1 + scale[b]) + shift[b]`, where shift/scale are slices of
/// `mods` [B, M] at element offsets `shift_off`, `scale_off`.
pub fn modulated_layer_norm(
    x: &[f32],
    out: &mut [f32],
    b: usize,
    t: usize,
    d: usize,
    mods: &[f32],
    m: usize,
    shift_off: usize,
    scale_off: usize,
    eps: f32,
) {
    out.par_chunks_mut(d).zip(x.par_chunks(d)).enumerate().for_each(|(row, (o, xr))| {
        let bi = row / t;
        let shift = &mods[bi * m + shift_off..][..d];
        let scale = &mods[bi * m + scale_off..][..d];
        let mean = xr.iter().map(|&v| v as f64).sum::<f64>() / d as f64;
        let var = xr.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / d as f64;
        let inv = 1.0 / (var + eps as f64).sqrt();
        for i in 0..d {
            let nrm = ((xr[i] as f64 - mean) * inv) as f32;
            o[i] = nrm * (1.0 + scale[i]) + shift[i];
        }
    });
    let _ = b;
}
