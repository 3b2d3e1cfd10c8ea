//! Softmax attention, computed transposed so that nothing is padded or copied: per head the
//! scores are S^T = K · Q^T [keys, queries] and the output O^T = V^T · P^T [head dim, queries].
//! The products' short sides (query blocks, head dims of 72 or 512) then fall on the GEMM's
//! tile dimensions without padding, K and V are packed once per head and read straight from
//! the qkv tensor, and the softmax runs down the columns, 16 queries a vector.

use rayon::prelude::*;

use super::elementwise::exp_f32;
use super::gemm::{Lhs, Mat};
use super::simd::wide_fn;

/// Scores held at once per task: keys x query block, at most ~1 MiB (half the L2 of the
/// CPUs this was tuned on), so the softmax and the second product read them from cache.
const SCORE_FLOATS: usize = 1 << 18;

/// qkv [B, L, 3, H, hd] -> out [B, L, H, hd].
pub fn attention(qkv: &[f32], b: usize, l: usize, heads: usize, hd: usize) -> Vec<f32> {
    let d = heads * hd;
    let ld = 3 * d;
    let mut out = vec![0f32; b * l * d];
    if l == 0 || hd == 0 {
        return out;
    }
    let scale = 1.0 / (hd as f32).sqrt();
    // Query ranges per head: enough tasks for every worker to get several (16 heads on two
    // workers already balance; one large head is split).
    let bh = b * heads;
    let splits = (4 * rayon::current_num_threads()).div_ceil(bh).clamp(1, l.div_ceil(32));
    let per = l.div_ceil(splits);
    let block = (SCORE_FLOATS / l).clamp(32, 256).min(per);
    let tasks: Vec<(usize, usize)> = (0..bh).flat_map(|t| (0..l.div_ceil(per)).map(move |s| (t, s * per))).collect();
    let results: Vec<(usize, usize, Vec<f32>)> = tasks
        .par_iter()
        .map_init(Vec::new, |scores: &mut Vec<f32>, &(t, q0)| {
            let (bi, h) = (t / heads, t % heads);
            let rows = per.min(l - q0);
            let head = &qkv[bi * l * ld + h * hd..];
            // K [keys, hd] and V^T [hd, keys], read in place from the interleaved qkv rows.
            let k = Lhs::new(Mat { data: &head[d..], row_stride: ld, col_stride: 1 }, l, hd);
            let vt = Lhs::new(Mat { data: &head[2 * d..], row_stride: 1, col_stride: ld }, hd, l);
            let mut o = vec![0f32; rows * hd];
            let mut ot = vec![0f32; hd * block];
            let (mut mx, mut sum) = (vec![0f32; block], vec![0f32; block]);
            let mut j0 = 0;
            while j0 < rows {
                let w = block.min(rows - j0);
                // Q^T [hd, w] for queries q0 + j0 ..
                let qt = Mat { data: &head[(q0 + j0) * ld..], row_stride: 1, col_stride: ld };
                scores.resize(l * w, 0.0);
                k.matmul(w, qt, scores, w, false);
                softmax_columns(scores, w, scale, &mut mx[..w], &mut sum[..w]);
                vt.matmul(w, Mat::rows(scores, w), &mut ot, w, false);
                // O^T [hd, w] -> rows of O, divided by each query's softmax normaliser.
                for (j, row) in o[j0 * hd..(j0 + w) * hd].chunks_exact_mut(hd).enumerate() {
                    let inv = 1.0 / sum[j];
                    for (i, v) in row.iter_mut().enumerate() {
                        *v = ot[i * w + j] * inv;
                    }
                }
                j0 += w;
            }
            (t, q0, o)
        })
        .collect();
    // [B, H, L, hd] blocks -> [B, L, H, hd]
    for (t, q0, o) in results {
        let (bi, h) = (t / heads, t % heads);
        for (j, row) in o.chunks_exact(hd).enumerate() {
            out[(bi * l + q0 + j) * d + h * hd..][..hd].copy_from_slice(row);
        }
    }
    out
}

wide_fn! {
    /// Column softmax of s [keys, w] in place, unnormalised: s = exp(scale * (s - max)) with
    /// each column's max in `mx` and its sum of exponentials left in `sum`.
    fn softmax_columns(s: &mut [f32], w: usize, scale: f32, mx: &mut [f32], sum: &mut [f32]) {
        mx.fill(f32::NEG_INFINITY);
        sum.fill(0.0);
        for row in s.chunks_exact(w) {
            for (m, &v) in mx.iter_mut().zip(row) {
                *m = m.max(v);
            }
        }
        for row in s.chunks_exact_mut(w) {
            for ((v, &m), z) in row.iter_mut().zip(mx.iter()).zip(sum.iter_mut()) {
                *v = exp_f32((*v - m) * scale);
                *z += *v;
            }
        }
    }
}
