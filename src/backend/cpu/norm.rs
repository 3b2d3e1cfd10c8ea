//! GroupNorm (+ SiLU) and LayerNorm with adaLN modulation. Statistics in f64: the means and
//! variances of 2^18-element groups would otherwise lose digits the 1e-5 tolerances need.

use rayon::prelude::*;

use super::elementwise::silu;

/// Sum of `f(v)` over `xs` in f64, in 8 independent lanes so the loop vectorises (the order
/// differs from a running sum only far below f32 precision).
#[inline]
fn lane_sum(xs: &[f32], f: impl Fn(f64) -> f64) -> f64 {
    let mut lanes = [0f64; 8];
    let mut chunks = xs.chunks_exact(8);
    for c in &mut chunks {
        for (l, &v) in lanes.iter_mut().zip(c) {
            *l += f(v as f64);
        }
    }
    let tail: f64 = chunks.remainder().iter().map(|&v| f(v as f64)).sum();
    lanes.iter().sum::<f64>() + tail
}

/// x [N, C, HW] -> out: per (n, group) normalise, then gamma/beta per channel, optional SiLU.
#[allow(clippy::too_many_arguments)]
pub fn group_norm(
    x: &[f32],
    out: &mut [f32],
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
    debug_assert_eq!(x.len(), out.len());
    out.par_chunks_mut(group_len).zip(x.par_chunks(group_len)).enumerate().for_each(|(i, (o, g))| {
        let group = i % groups;
        let mean = lane_sum(g, |v| v) / group_len as f64;
        let var = lane_sum(g, |v| (v - mean) * (v - mean)) / group_len as f64;
        let inv = 1.0 / (var + eps as f64).sqrt();
        for (j, (och, ch)) in o.chunks_exact_mut(hw).zip(g.chunks_exact(hw)).enumerate() {
            let cidx = group * cg + j;
            let a = (gamma[cidx] as f64 * inv) as f32;
            let b = (beta[cidx] as f64 - mean * gamma[cidx] as f64 * inv) as f32;
            if act_silu {
                och.iter_mut().zip(ch).for_each(|(o, &v)| *o = silu(v * a + b));
            } else {
                och.iter_mut().zip(ch).for_each(|(o, &v)| *o = v * a + b);
            }
        }
    });
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
