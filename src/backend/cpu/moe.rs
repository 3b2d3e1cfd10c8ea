//! Top-k mixture of experts: softmax gate, top-k per token, tokens grouped by expert so each
//! expert runs as two dense products, weighted combine.

use rayon::prelude::*;

use super::elementwise::bias_act;
use super::gemm::matmul_bt;
use super::gemm_bf16::{self, PackedBf16};
use crate::backend::{Act, Routing};

/// A weight matrix [n, k] as the CPU backend holds it: f32 values, or bf16 packed at load (at
/// `--precision bf16`, where products are bf16 with f32 sums and outputs are rounded to bf16).
#[derive(Clone, Copy)]
pub enum Matrix<'a> {
    F32(&'a [f32]),
    Bf16(&'a PackedBf16),
}

impl Matrix<'_> {
    /// `out[m, n] = x[m, k] · self^T`.
    pub fn matmul_bt(&self, m: usize, n: usize, k: usize, x: &[f32], out: &mut [f32], allow_threads: bool) {
        match self {
            Matrix::F32(w) => matmul_bt(m, n, k, x, w, out, allow_threads),
            Matrix::Bf16(w) => gemm_bf16::matmul_bt_f32(x, m, k, w, out, allow_threads),
        }
    }
    fn is_bf16(&self) -> bool {
        matches!(self, Matrix::Bf16(_))
    }
}

/// Gate softmax and top-k for x [n, d] with gate [e, d]. Returns (experts, weights) [n, k],
/// each row sorted by probability, descending (ties: lower expert index first).
pub fn route(x: &[f32], n: usize, d: usize, gate: Matrix, e: usize, k: usize) -> Routing {
    let mut logits = vec![0f32; n * e];
    gate.matmul_bt(n, e, d, x, &mut logits, true);
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

/// Run the experts. `fc1[e]` [f, d] + bias, GELU-tanh, `fc2[e]` [d, f] + bias; out [n, d]
/// (f32 sums of the weighted expert rows). With bf16 matrices, each expert layer's output is
/// rounded to bf16 after its bias (and GELU), where the CUDA path stores it.
///
/// An expert's weights stream through the cache once per call whatever its row count: the
/// bf16 kernel reads pre-packed weights in place, so an expert with a handful of rows costs one
/// pass over its weights and no packing (an expert with none costs nothing).
#[allow(clippy::too_many_arguments)]
pub fn experts(
    x: &[f32],
    n: usize,
    d: usize,
    f: usize,
    routing: &Routing,
    fc1_w: &[Matrix],
    fc1_b: &[&[f32]],
    fc2_w: &[Matrix],
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
        fc1_w[ex].matmul_bt(m, f, d, &xs, &mut h, threaded);
        bias_act(&mut h, Some(fc1_b[ex]), f, Act::GeluTanh);
        let mut y = vec![0f32; m * d];
        if fc2_w[ex].is_bf16() {
            // h is rounded by the bf16 product's input conversion; y after its bias.
            fc2_w[ex].matmul_bt(m, d, f, &h, &mut y, threaded);
            bias_act(&mut y, Some(fc2_b[ex]), d, Act::None);
            y.iter_mut().for_each(|v| *v = gemm_bf16::round_bf16(*v));
        } else {
            fc2_w[ex].matmul_bt(m, d, f, &h, &mut y, threaded);
        }
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
            if fc2_w[ex].is_bf16() {
                // The bias is already in the rounded rows.
                for (o, v) in dst.iter_mut().zip(&y_of[ex][r * d..(r + 1) * d]) {
                    *o += w * v;
                }
            } else {
                for ((o, v), b) in dst.iter_mut().zip(&y_of[ex][r * d..(r + 1) * d]).zip(fc2_b[ex]) {
                    *o += w * (v + b);
                }
            }
        }
    });
    out
}
