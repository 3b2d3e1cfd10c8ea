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
    // Counting sort of (token, slot) pairs by expert; `row_of[i * k + j]` is where token i's
    // slot j landed (expert, row in that expert's list).
    let mut lists: Vec<Vec<usize>> = vec![Vec::new(); e];
    let mut row_of = vec![(0usize, 0usize); n * k];
    for i in 0..n {
        for j in 0..k {
            let ex = routing.experts[i * k + j] as usize;
            row_of[i * k + j] = (ex, lists[ex].len());
            lists[ex].push(i);
        }
    }
    // Experts run side by side, each on one thread, largest first: a product of a few hundred
    // rows splits poorly over threads (both wait on the same weight stream at the same time),
    // while two experts on two threads keep both busy (PERF.md: the DiT's MoE layers 4.7 ->
    // 4.0-4.3 s a forward). An expert holding more than a thread's share of all rows (top-1
    // routing can send every token to one) runs alone first, its products threaded.
    let threads = rayon::current_num_threads();
    let mut order: Vec<usize> = (0..e).filter(|&ex| !lists[ex].is_empty()).collect();
    order.sort_by_key(|&ex| std::cmp::Reverse(lists[ex].len()));
    let (alone, side_by_side): (Vec<usize>, Vec<usize>) =
        order.into_iter().partition(|&ex| threads > 1 && lists[ex].len() * threads > n * k);
    let run = |ex: usize, threaded: bool| {
        let list = &lists[ex];
        let m = list.len();
        let mut xs = vec![0f32; m * d];
        for (dst, &i) in xs.chunks_exact_mut(d).zip(list) {
            dst.copy_from_slice(&x[i * d..(i + 1) * d]);
        }
        let mut h = vec![0f32; m * f];
        matmul_bt(m, f, d, &xs, fc1_w[ex], &mut h, threaded);
        bias_act(&mut h, Some(fc1_b[ex]), f, Act::GeluTanh);
        let mut y = vec![0f32; m * d];
        matmul_bt(m, d, f, &h, fc2_w[ex], &mut y, threaded);
        (ex, y)
    };
    let mut ys: Vec<(usize, Vec<f32>)> = alone.into_iter().map(|ex| run(ex, true)).collect();
    ys.par_extend(side_by_side.par_iter().with_max_len(1).map(|&ex| run(ex, false)));
    let mut y_of: Vec<&[f32]> = vec![&[]; e];
    for (ex, y) in &ys {
        y_of[*ex] = y;
    }
    // Every token sums its slots in expert order (as the authors' scatter_reduce does), so the
    // result does not depend on which expert finished first.
    let mut out = vec![0f32; n * d];
    out.par_chunks_mut(d).enumerate().for_each(|(i, dst)| {
        let mut slots: Vec<usize> = (0..k).collect();
        slots.sort_by_key(|&j| row_of[i * k + j].0);
        for j in slots {
            let (ex, r) = row_of[i * k + j];
            let w = routing.weights[i * k + j];
            for ((o, v), b) in dst.iter_mut().zip(&y_of[ex][r * d..(r + 1) * d]).zip(fc2_b[ex]) {
                *o += w * (v + b);
            }
        }
    });
    out
}
