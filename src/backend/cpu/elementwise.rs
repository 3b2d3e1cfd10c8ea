//! Activations and elementwise helpers.

use rayon::prelude::*;

use super::simd::wide_fn;
use crate::backend::Act;

const CHUNK: usize = 1 << 14;

/// e^x to about one ulp in branch-free f32 arithmetic, so loops over it vectorise (libm's
/// `expf` is a call per element). x is clamped to [-87, 88], which keeps 2^n a normal number;
/// beyond that the activations below are already at their limits.
#[inline]
pub fn exp_f32(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    // ln 2 split in two so that n * LN2_HI is exact for the n that occur.
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    // Adding and subtracting 1.5 * 2^23 rounds to the nearest integer.
    const ROUND: f32 = 12_582_912.0;
    let x = x.clamp(-87.0, 88.0);
    // t holds n = round(x log2 e) in its low mantissa bits.
    let t = x * LOG2E + ROUND;
    let n = t - ROUND;
    let r = (x - n * LN2_HI) - n * LN2_LO;
    // Taylor series of e^r to r^7 / 7! for |r| <= ln2 / 2: truncation below 2e-8.
    let p = 1.0 / 5040.0;
    let p = p * r + 1.0 / 720.0;
    let p = p * r + 1.0 / 120.0;
    let p = p * r + 1.0 / 24.0;
    let p = p * r + 1.0 / 6.0;
    let p = p * r + 0.5;
    let p = p * r + 1.0;
    let p = p * r + 1.0;
    // 2^n built from t's bits: the low bits of t + 127 shifted into the exponent field (the
    // rest shifts out). Integer arithmetic only, unlike `n as i32`, whose saturating
    // conversion keeps the loop from vectorising.
    p * f32::from_bits(t.to_bits().wrapping_add(127) << 23)
}

#[inline]
pub fn gelu_tanh(x: f32) -> f32 {
    // sqrt(2 / pi)
    const K: f32 = 0.797_884_6;
    // 0.5 * (1 + tanh(u)) = 1 / (1 + exp(-2u)): one exp instead of tanh (which costs an expm1
    // and more).
    x / (1.0 + exp_f32(-2.0 * K * (x + 0.044715 * x * x * x)))
}

#[inline]
pub fn silu(x: f32) -> f32 {
    x / (1.0 + exp_f32(-x))
}

pub fn apply(act: Act, data: &mut [f32]) {
    if act != Act::None {
        data.par_chunks_mut(CHUNK).for_each(|c| bias_act_rows(c, None, c.len(), act));
    }
}

/// Add `bias` (length n) to every row of `data` [.., n] and apply `act`, in parallel.
pub fn bias_act(data: &mut [f32], bias: Option<&[f32]>, n: usize, act: Act) {
    if bias.is_none() && act == Act::None {
        return;
    }
    let rows_per = (CHUNK / n.max(1)).max(1);
    data.par_chunks_mut(rows_per * n).for_each(|chunk| bias_act_rows(chunk, bias, n, act));
}

wide_fn! {
    /// `bias_act` on the rows [.., n] of one chunk, on the calling thread.
    fn bias_act_rows(chunk: &mut [f32], bias: Option<&[f32]>, n: usize, act: Act) {
        for row in chunk.chunks_exact_mut(n) {
            if let Some(b) = bias {
                row.iter_mut().zip(b).for_each(|(x, b)| *x += b);
            }
            match act {
                Act::None => {}
                Act::GeluTanh => row.iter_mut().for_each(|x| *x = gelu_tanh(*x)),
                Act::Silu => row.iter_mut().for_each(|x| *x = silu(*x)),
            }
        }
    }
}
