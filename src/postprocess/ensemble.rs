//! Marigold's `ensemble_depth` (scale- and shift-invariant, median reduction), as the authors'
//! pipeline calls it: members are aligned by per-member scale s and shift t found with scipy's
//! BFGS on a float32 cost at reduced resolution, then the aligned members' per-pixel median is
//! normalised to [0, 1].
//!
//! How close this gets to the reference: the downsampling, the initial parameters, the cost at
//! any given parameters and the `max_iter = 0` result match the fixture to float rounding. The
//! float32 pair sums follow PyTorch's CPU summation order bit for bit; PyTorch's float32 `sqrt`
//! however goes through MKL's vector math, which is not correctly rounded and rounds
//! differently per instruction set (on one x86-64 host, 23 in 3000 random inputs differ from
//! the correctly rounded root with AVX-512, 470 with SSE4.2); we take the correctly rounded
//! root. Against torch 2.15 + scipy 1.17 on that host our first finite-difference gradient is
//! identical and the final parameters agree to 5e-8 (11 of 143 costs differ in the last bit).
//! The fixture's host rounded one of the first gradient's sums differently, and since scipy's
//! forward differences (step 1.5e-8) on a float32 cost are quantised rounding noise, its BFGS
//! path departs from ours after the first gradient. The fixture's README measures that the
//! reference itself moves by 1.7e-2 (depth) under 1e-7 input noise, hence its 0.1 tolerance.

use rayon::prelude::*;

use super::bfgs::{minimize_bfgs, BfgsResult};
use super::reduce::{median_lower, median_lower_f64, torch_sum_f32};
use crate::error::{Error, Result};

#[derive(Clone, Debug, PartialEq)]
pub struct EnsembleOptions {
    /// Alignment runs on members resized (nearest-exact) to this longest edge, when larger.
    pub max_res: Option<usize>,
    pub regularizer_strength: f64,
    /// BFGS iterations (0: the min/max initial alignment only).
    pub max_iter: usize,
    /// BFGS gradient tolerance (scipy's `tol`).
    pub tol: f64,
    pub output_uncertainty: bool,
}

impl Default for EnsembleOptions {
    /// Marigold's defaults.
    fn default() -> Self {
        EnsembleOptions {
            max_res: Some(1024),
            regularizer_strength: 0.02,
            max_iter: 2,
            tol: 1e-3,
            output_uncertainty: true,
        }
    }
}

#[derive(Clone, Debug)]
pub struct Ensemble {
    /// [h * w], in [0, 1]
    pub depth: Vec<f32>,
    /// [h * w]: median absolute deviation of the aligned members over the same range
    pub uncertainty: Option<Vec<f32>>,
    /// the alignment: [s_1..s_k, t_1..t_k]
    pub params: Vec<f64>,
    /// the optimiser's record (every cost evaluation)
    pub search: BfgsResult,
}

/// Size after Marigold's `resize_max_res`: the longer edge becomes `max_res`, the other
/// scales with it (truncated).
pub fn max_res_size(h: usize, w: usize, max_res: usize) -> (usize, usize) {
    let factor = (max_res as f64 / w as f64).min(max_res as f64 / h as f64);
    ((h as f64 * factor) as usize, (w as f64 * factor) as usize)
}

/// torch's `interpolate(mode="nearest-exact")` of one [h, w] plane to [nh, nw]: source index
/// floor((dst + 0.5) * in / out), the scale and the product in float32 as PyTorch does.
pub fn resize_nearest_exact(src: &[f32], h: usize, w: usize, nh: usize, nw: usize) -> Vec<f32> {
    let index = |dst: usize, input: usize, output: usize| -> usize {
        let scale = input as f32 / output as f32;
        let s = (((dst as f64 + 0.5) * scale as f64) as f32).floor() as usize;
        s.min(input - 1)
    };
    let rows: Vec<usize> = (0..nh).map(|y| index(y, h, nh)).collect();
    let cols: Vec<usize> = (0..nw).map(|x| index(x, w, nw)).collect();
    let mut out = Vec::with_capacity(nh * nw);
    for &r in &rows {
        out.extend(cols.iter().map(|&c| src[r * w + c]));
    }
    out
}

/// The members used for the alignment search: `members` [k, h, w] resized to `max_res` when
/// their longer edge exceeds it. Returns the stack and its (h, w).
pub fn alignment_stack(
    members: &[f32],
    k: usize,
    h: usize,
    w: usize,
    max_res: Option<usize>,
) -> (Vec<f32>, usize, usize) {
    match max_res {
        Some(m) if h.max(w) > m => {
            let (nh, nw) = max_res_size(h, w, m);
            let small = (0..k).flat_map(|i| resize_nearest_exact(&members[i * h * w..(i + 1) * h * w], h, w, nh, nw));
            (small.collect(), nh, nw)
        }
        _ => (members.to_vec(), h, w),
    }
}

/// [s_1..s_k, t_1..t_k] mapping each member's min to 0 and max to 1 (float32, as torch).
pub fn init_params(stack: &[f32], k: usize) -> Vec<f64> {
    let n = stack.len() / k;
    let mut s = Vec::with_capacity(k);
    let mut t = Vec::with_capacity(k);
    for m in 0..k {
        let member = &stack[m * n..(m + 1) * n];
        let lo = member.iter().copied().fold(f32::INFINITY, f32::min);
        let hi = member.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let sm = 1.0f32 / (hi - lo).max(1e-6);
        s.push(sm as f64);
        t.push((-sm * lo) as f64);
    }
    s.extend(t);
    s
}

/// Marigold's alignment cost on the reduced stack, in float32 like the reference: the sum over
/// member pairs of the RMS difference, plus `regularizer * (|min(median)| + |1 - max(median)|)`.
pub struct AlignmentCost<'a> {
    stack: &'a [f32],
    k: usize,
    regularizer: f64,
}

impl<'a> AlignmentCost<'a> {
    pub fn new(stack: &'a [f32], k: usize, regularizer: f64) -> Self {
        AlignmentCost { stack, k, regularizer }
    }

    pub fn eval(&self, params: &[f64]) -> f64 {
        let k = self.k;
        let n = self.stack.len() / k;
        let aligned = align_f32(self.stack, k, params);
        let pairs: Vec<(usize, usize)> = (0..k).flat_map(|i| (i + 1..k).map(move |j| (i, j))).collect();
        // pairs are independent; their terms are added in the reference's order below
        let terms: Vec<f32> = pairs
            .par_iter()
            .map(|&(i, j)| {
                let (ai, aj) = (&aligned[i * n..(i + 1) * n], &aligned[j * n..(j + 1) * n]);
                let sq: Vec<f32> = ai
                    .iter()
                    .zip(aj)
                    .map(|(a, b)| {
                        let d = a - b;
                        d * d
                    })
                    .collect();
                (torch_sum_f32(&sq) / n as f32).sqrt()
            })
            .collect();
        let mut cost = 0.0f64;
        for t in terms {
            cost += t as f64;
        }
        if self.regularizer > 0.0 {
            let mut col = vec![0.0f32; k];
            let (mut lo, mut hi) = (f32::INFINITY, f32::NEG_INFINITY);
            for p in 0..n {
                for (m, c) in col.iter_mut().enumerate() {
                    *c = aligned[m * n + p];
                }
                let med = median_lower(&mut col);
                lo = lo.min(med);
                hi = hi.max(med);
            }
            let near = (0.0f32 - lo).abs() as f64;
            let far = (1.0f32 - hi).abs() as f64;
            cost += (near + far) * self.regularizer;
        }
        cost
    }
}

/// `depth * s + t` per member in float32 (two roundings, as two torch ops).
fn align_f32(stack: &[f32], k: usize, params: &[f64]) -> Vec<f32> {
    let n = stack.len() / k;
    let mut out = Vec::with_capacity(stack.len());
    for m in 0..k {
        let (s, t) = (params[m] as f32, params[k + m] as f32);
        out.extend(stack[m * n..(m + 1) * n].iter().map(|&d| d * s + t));
    }
    out
}

/// Ensemble `k` depth predictions `members` [k, h, w] into one relative depth in [0, 1].
pub fn ensemble_depth(members: &[f32], k: usize, h: usize, w: usize, opts: &EnsembleOptions) -> Result<Ensemble> {
    if k == 0 || h == 0 || w == 0 || members.len() != k * h * w {
        return Err(Error::Shape(format!(
            "ensemble_depth: {} values for {k} members of {h}x{w}; expected k * h * w with every size >= 1",
            members.len()
        )));
    }
    if let Some(bad) = members.iter().find(|v| !v.is_finite()) {
        return Err(Error::Input(format!("ensemble_depth: members contain a non-finite value ({bad})")));
    }
    let (stack, _, _) = alignment_stack(members, k, h, w, opts.max_res);
    let x0 = init_params(&stack, k);
    let cost = AlignmentCost::new(&stack, k, opts.regularizer_strength);
    let search = minimize_bfgs(&mut |p: &[f64]| cost.eval(p), &x0, opts.tol, opts.max_iter);
    let params = search.x.clone();

    // full resolution, in f64 (the reference keeps the caller's dtype here)
    let n = h * w;
    let aligned: Vec<f64> = (0..k)
        .flat_map(|m| members[m * n..(m + 1) * n].iter().map(move |&d| d as f64))
        .enumerate()
        .map(|(i, d)| d * params[i / n] + params[k + i / n])
        .collect();
    let mut col = vec![0.0f64; k];
    let median: Vec<f64> = (0..n)
        .map(|p| {
            for (m, c) in col.iter_mut().enumerate() {
                *c = aligned[m * n + p];
            }
            median_lower_f64(&mut col)
        })
        .collect();
    let uncertainty = opts.output_uncertainty.then(|| {
        (0..n)
            .map(|p| {
                for (m, c) in col.iter_mut().enumerate() {
                    *c = (aligned[m * n + p] - median[p]).abs();
                }
                median_lower_f64(&mut col)
            })
            .collect::<Vec<f64>>()
    });
    let lo = median.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = median.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let range = (hi - lo).max(1e-6);
    let depth = median.iter().map(|&m| ((m - lo) / range) as f32).collect();
    let uncertainty = uncertainty.map(|u| u.iter().map(|&v| (v / range) as f32).collect());
    Ok(Ensemble { depth, uncertainty, params, search })
}
