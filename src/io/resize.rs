//! Resizing stacks of f32 planes (`data.len() = channels * h * w`, CHW), separably: each axis is a
//! list of taps (first input index, weights) applied to rows, then to columns.
//!
//! - `resize_area`: images to the model's resolution. Shrinking averages the input area each
//!   output pixel covers (a box filter, so an integer factor gives exact block means and nothing
//!   aliases); growing falls back to bilinear, where an area filter would only replicate pixels.
//! - `resize_bilinear`: predictions back to the input size, `align_corners=False` semantics
//!   (PyTorch's `F.interpolate(mode="bilinear")`), no antialiasing.
//! - `resize_nearest`: masks; samples the input pixel under each output pixel's centre (PyTorch's
//!   `nearest-exact`), so values stay in the mask's set.

use crate::error::{Error, Result};

/// Weights of one output sample: `weights[k]` multiplies input `start + k`.
struct Tap {
    start: usize,
    weights: Vec<f32>,
}

fn area_taps(n_in: usize, n_out: usize) -> Vec<Tap> {
    let scale = n_in as f64 / n_out as f64;
    (0..n_out)
        .map(|i| {
            let lo = i as f64 * scale;
            let hi = ((i + 1) as f64 * scale).min(n_in as f64);
            let start = (lo.floor() as usize).min(n_in - 1);
            let end = (hi.ceil() as usize).clamp(start + 1, n_in);
            let mut weights: Vec<f64> =
                (start..end).map(|j| (hi.min((j + 1) as f64) - lo.max(j as f64)).max(0.0)).collect();
            let sum: f64 = weights.iter().sum();
            weights.iter_mut().for_each(|w| *w /= sum);
            Tap { start, weights: weights.into_iter().map(|w| w as f32).collect() }
        })
        .collect()
}

fn bilinear_taps(n_in: usize, n_out: usize) -> Vec<Tap> {
    let scale = n_in as f64 / n_out as f64;
    (0..n_out)
        .map(|i| {
            let src = ((i as f64 + 0.5) * scale - 0.5).max(0.0);
            let i0 = (src.floor() as usize).min(n_in - 1);
            if i0 + 1 >= n_in {
                return Tap { start: i0, weights: vec![1.0] };
            }
            let l = (src - i0 as f64) as f32;
            Tap { start: i0, weights: vec![1.0 - l, l] }
        })
        .collect()
}

fn nearest_taps(n_in: usize, n_out: usize) -> Vec<Tap> {
    let scale = n_in as f64 / n_out as f64;
    (0..n_out)
        .map(|i| {
            let src = (((i as f64 + 0.5) * scale).floor() as usize).min(n_in - 1);
            Tap { start: src, weights: vec![1.0] }
        })
        .collect()
}

/// Antialiased taps: area when shrinking an axis, bilinear when growing or keeping it.
fn antialiased_taps(n_in: usize, n_out: usize) -> Vec<Tap> {
    if n_out < n_in {
        area_taps(n_in, n_out)
    } else {
        bilinear_taps(n_in, n_out)
    }
}

fn check(op: &str, len: usize, w: usize, h: usize, out_w: usize, out_h: usize) -> Result<usize> {
    if w == 0 || h == 0 || out_w == 0 || out_h == 0 {
        return Err(Error::Shape(format!("{op}: cannot resize {w}x{h} to {out_w}x{out_h}: zero size")));
    }
    if !len.is_multiple_of(w * h) {
        return Err(Error::Shape(format!("{op}: {len} values are not a whole number of {w}x{h} planes")));
    }
    Ok(len / (w * h))
}

fn apply(data: &[f32], planes: usize, w: usize, h: usize, xt: &[Tap], yt: &[Tap]) -> Vec<f32> {
    let (out_w, out_h) = (xt.len(), yt.len());
    let mut rows = vec![0.0f32; planes * h * out_w];
    for (src, dst) in data.chunks_exact(w).zip(rows.chunks_exact_mut(out_w)) {
        for (o, t) in dst.iter_mut().zip(xt) {
            *o = t.weights.iter().zip(&src[t.start..]).map(|(w, v)| w * v).sum();
        }
    }
    let mut out = vec![0.0f32; planes * out_h * out_w];
    for (src, dst) in rows.chunks_exact(h * out_w).zip(out.chunks_exact_mut(out_h * out_w)) {
        for (orow, t) in dst.chunks_exact_mut(out_w).zip(yt) {
            for (k, &wt) in t.weights.iter().enumerate() {
                let irow = &src[(t.start + k) * out_w..(t.start + k + 1) * out_w];
                orow.iter_mut().zip(irow).for_each(|(o, v)| *o += wt * v);
            }
        }
    }
    out
}

/// Antialiased resize of planes `w` x `h` to `out_w` x `out_h` (area down, bilinear up, per axis).
pub fn resize_area(data: &[f32], w: usize, h: usize, out_w: usize, out_h: usize) -> Result<Vec<f32>> {
    let planes = check("resize_area", data.len(), w, h, out_w, out_h)?;
    Ok(apply(data, planes, w, h, &antialiased_taps(w, out_w), &antialiased_taps(h, out_h)))
}

/// Bilinear resize with `align_corners=False` semantics, no antialiasing.
pub fn resize_bilinear(data: &[f32], w: usize, h: usize, out_w: usize, out_h: usize) -> Result<Vec<f32>> {
    let planes = check("resize_bilinear", data.len(), w, h, out_w, out_h)?;
    Ok(apply(data, planes, w, h, &bilinear_taps(w, out_w), &bilinear_taps(h, out_h)))
}

/// Nearest-neighbour resize sampling each output pixel's centre; output values are input values.
pub fn resize_nearest(data: &[f32], w: usize, h: usize, out_w: usize, out_h: usize) -> Result<Vec<f32>> {
    let planes = check("resize_nearest", data.len(), w, h, out_w, out_h)?;
    Ok(apply(data, planes, w, h, &nearest_taps(w, out_w), &nearest_taps(h, out_h)))
}
