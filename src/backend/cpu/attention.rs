//! Softmax attention: scores materialised a block of query rows at a time (never the whole
//! L x L matrix), one (batch, head, row block) per task.

use rayon::prelude::*;

use super::gemm::{matmul, Mat};

const ROW_BLOCK: usize = 128;

/// qkv [B, L, 3, H, hd] -> out [B, L, H, hd].
pub fn attention(qkv: &[f32], b: usize, l: usize, heads: usize, hd: usize) -> Vec<f32> {
    let d = heads * hd;
    // Gather per-head contiguous q, k, v: [3, B, H, L, hd].
    let mut split = vec![0f32; 3 * b * heads * l * hd];
    split.par_chunks_mut(l * hd).enumerate().for_each(|(i, dst)| {
        let (which, bi, h) = (i / (b * heads), (i / heads) % b, i % heads);
        for t in 0..l {
            let src = &qkv[(bi * l + t) * 3 * d + which * d + h * hd..][..hd];
            dst[t * hd..(t + 1) * hd].copy_from_slice(src);
        }
    });
    let head_len = l * hd;
    let plane = b * heads * head_len;
    let (q_all, rest) = split.split_at(plane);
    let (k_all, v_all) = rest.split_at(plane);
    let scale = 1.0 / (hd as f32).sqrt();
    let blocks = l.div_ceil(ROW_BLOCK);
    let mut heads_out = vec![0f32; plane];
    // Row blocks per head, assigned explicitly so a block never straddles two heads.
    let tasks: Vec<(usize, usize)> = (0..b * heads).flat_map(|bh| (0..blocks).map(move |r| (bh, r))).collect();
    let results: Vec<(usize, usize, Vec<f32>)> = tasks
        .par_iter()
        .map_init(Vec::new, |scores: &mut Vec<f32>, &(bh, r)| {
            let r0 = r * ROW_BLOCK;
            let rows = ROW_BLOCK.min(l - r0);
            let q = &q_all[bh * head_len + r0 * hd..][..rows * hd];
            let k = &k_all[bh * head_len..][..head_len];
            let v = &v_all[bh * head_len..][..head_len];
            scores.resize(rows * l, 0.0);
            matmul(rows, l, hd, Mat::rows(q, hd), Mat::transposed(k, hd), scores, l, false, false);
            for row in scores.chunks_exact_mut(l) {
                let mut mx = f32::NEG_INFINITY;
                for s in row.iter_mut() {
                    *s *= scale;
                    mx = mx.max(*s);
                }
                let mut sum = 0f32;
                for s in row.iter_mut() {
                    *s = (*s - mx).exp();
                    sum += *s;
                }
                let inv = 1.0 / sum;
                row.iter_mut().for_each(|s| *s *= inv);
            }
            let mut out = vec![0f32; rows * hd];
            matmul(rows, hd, l, Mat::rows(scores, l), Mat::rows(v, hd), &mut out, hd, false, false);
            (bh, r0, out)
        })
        .collect();
    for (bh, r0, o) in results {
        heads_out[bh * head_len + r0 * hd..][..o.len()].copy_from_slice(&o);
    }
    // [B, H, L, hd] -> [B, L, H, hd]
    let mut out = vec![0f32; b * l * d];
    out.par_chunks_mut(d).enumerate().for_each(|(row, dst)| {
        let (bi, t) = (row / l, row % l);
        for h in 0..heads {
            dst[h * hd..(h + 1) * hd].copy_from_slice(&heads_out[((bi * heads + h) * l + t) * hd..][..hd]);
        }
    });
    out
}
