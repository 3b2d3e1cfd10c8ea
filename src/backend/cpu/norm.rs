//! GroupNorm (+ SiLU) and LayerNorm with adaLN modulation. Statistics in f64: the means and
//! variances of 2^18-element groups would otherwise lose digits the 1e-5 tolerances need.

use rayon::prelude::*;

use super::elementwise::silu;
use super::simd::wide_fn;

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
        let first = (i % groups) * cg;
        norm_group(o, g, hw, &gamma[first..first + cg], &beta[first..first + cg], eps, act_silu)
    });
}

wide_fn! {
    /// One group g [cg, hw] -> o, with its channels' gamma and beta.
    fn norm_group(o: &mut [f32], g: &[f32], hw: usize, gamma: &[f32], beta: &[f32], eps: f32, act_silu: bool) {
        let group_len = g.len();
        let mean = lane_sum(g, |v| v) / group_len as f64;
        let var = lane_sum(g, |v| (v - mean) * (v - mean)) / group_len as f64;
        let inv = 1.0 / (var + eps as f64).sqrt();
        for (j, (och, ch)) in o.chunks_exact_mut(hw).zip(g.chunks_exact(hw)).enumerate() {
            let a = (gamma[j] as f64 * inv) as f32;
            let b = (beta[j] as f64 - mean * gamma[j] as f64 * inv) as f32;
            if act_silu {
                och.iter_mut().zip(ch).for_each(|(o, &v)| *o = silu(v * a + b));
            } else {
                och.iter_mut().zip(ch).for_each(|(o, &v)| *o = v * a + b);
            }
        }
    }
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
        norm_row_modulated(o, xr, shift, scale, eps)
    });
    let _ = b;
}

wide_fn! {
    /// One row: `LN(x) * (1 + scale) + shift`.
    fn norm_row_modulated(o: &mut [f32], xr: &[f32], shift: &[f32], scale: &[f32], eps: f32) {
        let d = xr.len() as f64;
        let mean = lane_sum(xr, |v| v) / d;
        let var = lane_sum(xr, |v| (v - mean) * (v - mean)) / d;
        let inv = 1.0 / (var + eps as f64).sqrt();
        for (((o, &x), &sc), &sh) in o.iter_mut().zip(xr).zip(scale).zip(shift) {
            let nrm = ((x as f64 - mean) * inv) as f32;
            *o = nrm * (1.0 + sc) + sh;
        }
    }
}
