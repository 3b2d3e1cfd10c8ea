//! Activations and elementwise helpers.

use rayon::prelude::*;

use crate::backend::Act;

const CHUNK: usize = 1 << 14;

#[inline]
pub fn gelu_tanh(x: f32) -> f32 {
    const K: f32 = 0.797_884_6; // sqrt(2 / pi)
                                // 0.5 * (1 + tanh(u)) = 1 / (1 + exp(-2u)): one exp instead of tanh (which costs an
                                // expm1 and more); the limits come out right (x / inf = -0 for large negative x).
    x / (1.0 + (-2.0 * K * (x + 0.044715 * x * x * x)).exp())
}

#[inline]
pub fn silu(x: f32) -> f32 {
    x / (1.0 + (-x).exp())
}

pub fn apply(act: Act, data: &mut [f32]) {
    match act {
        Act::None => {}
        Act::GeluTanh => data.par_chunks_mut(CHUNK).for_each(|c| c.iter_mut().for_each(|x| *x = gelu_tanh(*x))),
        Act::Silu => data.par_chunks_mut(CHUNK).for_each(|c| c.iter_mut().for_each(|x| *x = silu(*x))),
    }
}

/// Add `bias` (length n) to every row of `data` [.., n] and apply `act`, in parallel.
pub fn bias_act(data: &mut [f32], bias: Option<&[f32]>, n: usize, act: Act) {
    if bias.is_none() && act == Act::None {
        return;
    }
    let rows_per = (CHUNK / n.max(1)).max(1);
    data.par_chunks_mut(rows_per * n).for_each(|chunk| {
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
    });
}
