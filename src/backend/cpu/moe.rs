//! Top-k mixture of experts: softmax gate, top-k per token, tokens grouped by expert so each
//! expert runs as two dense products, weighted combine.

use rayon::prelude::*;

use super::elementwise::bias_act;
use super::gemm::matmul_bt;
use crate::backend::{Act, Routing};

/// Gate softmax and top-k for x [n, d] with gate [e, d]. Returns (experts, weights) [n, k],
/// each row sorted by probability, descending (ties: lower expert index first).
pub fn route(x: &[f32], n: usize, d: usize, gate: &[f32], e: usize, k: usize) -> Routing {
    let mut logits = vec![0f32; n * e];
    matmul_bt(n, e, d, x, gate, &mut logits, true);
    let mut experts = vec![0i64; n * k];
    let mut weights = vec![0f32; n * k];
    experts.par_chunks_mut(k).zip(weights.par_chunks_mut(k)).zip(logits.par_chunks(e)).for_each(|((ex, wt), lg)| {
        let mx = lg.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
        let mut p: Vec<f32> = lg.iter().map(|&v| (v - mx).exp()).collect();
        let sum: f32 = p.iter().sum();
        p.iter_mut().for_each(|v| *v /= sum);
        let mut order: Vec<usize> = (0..e).collect();
        order.sort_by(|&a, &b| p[b].partial_cmp(&p[a]).unwrap_or(std::cmp::Ordering::Equal).then(a.cmp(&b)));
        for j in 0..k {
            ex[j] = order[j] as i64;
            wt[j] = p[order[j]];
        }
    });
    Routing { top_k: k, experts, weights }
}

/// Run the experts. `fc1[e]` [f, d] + bias, GELU-tanh, `fc2[e]` [d, f] + bias; out [n, d].
#[allow(clippy::too_many_arguments)]
pub fn experts(
    x: &[f32],
    n: usize,
    d: usize,
    f: usize,
    routing: &Routing,
    fc1_w: &[&[f32]],
    fc1_b: &[&[f32]],
    fc2_w: &[&[f32]],
    fc2_b: &[&[f32]],
) -> Vec<f32> {
    let k = routing.top_k;
    let e = fc1_w.len();
    // Counting sort of (token, slot) pairs by expert.
    let mut lists: Vec<Vec<(usize, f32)>> = vec![Vec::new(); e];
    for i in 0..n {
        for j in 0..k {
            let ex = routing.experts[i * k + j] as usize;
            lists[ex].push((i, routing.weights[i * k + j]));
        }
    }
    // Experts run in index order and each adds its weighted rows to `out` at once, so every
    // token sums its slots in expert order (as the authors' scatter_reduce does) and the result
    // does not depend on thread timing. The row buffers are reused from expert to expert
    // (each product overwrites what it reads back).
    let mut out = vec![0f32; n * d];
    let (mut xs, mut h, mut y) = (Vec::new(), Vec::new(), Vec::new());
    for (ex, list) in lists.iter().enumerate() {
        if list.is_empty() {
            continue;
        }
        let m = list.len();
        xs.resize(m * d, 0.0);
        xs.par_chunks_mut(d)
            .zip(list.par_iter())
            .for_each(|(dst, &(i, _))| dst.copy_from_slice(&x[i * d..(i + 1) * d]));
        h.resize(m * f, 0.0);
        matmul_bt(m, f, d, &xs[..m * d], fc1_w[ex], &mut h[..m * f], true);
        bias_act(&mut h[..m * f], Some(fc1_b[ex]), f, Act::GeluTanh);
        y.resize(m * d, 0.0);
        matmul_bt(m, d, f, &h[..m * f], fc2_w[ex], &mut y[..m * d], true);
        let b2 = fc2_b[ex];
        for (r, &(i, w)) in list.iter().enumerate() {
            let dst = &mut out[i * d..(i + 1) * d];
            for ((o, v), b) in dst.iter_mut().zip(&y[r * d..(r + 1) * d]).zip(b2) {
                *o += w * (v + b);
            }
        }
    }
    out
}
