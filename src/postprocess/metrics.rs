//! Least-squares fits and the evaluation metrics (the authors' `calculate_depth_with_fit`,
//! `calculate_epe_with_fit`, and the standard depth / flow / amodal metrics). All in f64.
//!
//! Formulas:
//! - fit: (alpha, beta) minimising sum (alpha * pred + beta - gt)^2 over the valid pixels.
//! - depth AbsRel = mean(|d - g| / g), delta1 = fraction with max(d / g, g / d) < 1.25, over the
//!   valid pixels, where d is the fitted prediction clamped to the dataset's depth range and to
//!   at least 1e-6 (Marigold's evaluation protocol).
//! - flow EPE = mean over pixels of sqrt((u - gu)^2 + (v - gv)^2), with or without fitting each
//!   component first.
//! - mask IoU = |pred AND gt| / |pred OR gt| (1 when both are empty).
//! - PSNR = 10 log10(peak^2 / MSE) (infinite when the images are equal).

use crate::error::{Error, Result};

/// Least-squares scale and shift with `alpha * pred + beta ~ gt` over the valid pixels; the
/// returned `fitted` covers every pixel. A constant prediction gets alpha = 0, beta = mean(gt).
pub fn depth_fit(pred: &[f32], gt: &[f32], valid: Option<&[bool]>) -> Result<(f64, f64, Vec<f32>)> {
    let (alpha, beta) = fit_affine(pred, gt, valid)?;
    let fitted = pred.iter().map(|&p| (alpha * p as f64 + beta) as f32).collect();
    Ok((alpha, beta, fitted))
}

/// (alpha, beta) of the least-squares line through (pred, gt).
pub fn fit_affine(pred: &[f32], gt: &[f32], valid: Option<&[bool]>) -> Result<(f64, f64)> {
    if pred.len() != gt.len() || valid.is_some_and(|v| v.len() != pred.len()) {
        return Err(Error::Shape(format!(
            "fit: prediction has {} pixels, ground truth {}, mask {:?}; they must match",
            pred.len(),
            gt.len(),
            valid.map(|v| v.len())
        )));
    }
    let keep = |i: usize| valid.is_none_or(|v| v[i]);
    let (mut n, mut sp, mut sg) = (0usize, 0.0f64, 0.0f64);
    for i in (0..pred.len()).filter(|&i| keep(i)) {
        n += 1;
        sp += pred[i] as f64;
        sg += gt[i] as f64;
    }
    if n == 0 {
        return Err(Error::Input("fit: no valid pixels".into()));
    }
    let (mp, mg) = (sp / n as f64, sg / n as f64);
    let (mut spp, mut spg) = (0.0f64, 0.0f64);
    for i in (0..pred.len()).filter(|&i| keep(i)) {
        let (dp, dg) = (pred[i] as f64 - mp, gt[i] as f64 - mg);
        spp += dp * dp;
        spg += dp * dg;
    }
    let alpha = if spp > 0.0 { spg / spp } else { 0.0 };
    Ok((alpha, mg - alpha * mp))
}

/// The authors' `calculate_epe_with_fit`: fit x and y separately to the ground truth, then the
/// mean end-point error. Returns [epe, alpha_x, beta_x, alpha_y, beta_y].
pub fn epe_with_fit(px: &[f32], gx: &[f32], py: &[f32], gy: &[f32]) -> Result<[f64; 5]> {
    let (ax, bx) = fit_affine(px, gx, None)?;
    let (ay, by) = fit_affine(py, gy, None)?;
    if py.len() != px.len() {
        return Err(Error::Shape(format!("epe: x has {} pixels, y {}", px.len(), py.len())));
    }
    let epe = (0..px.len())
        .map(|i| {
            let ex = ax * px[i] as f64 + bx - gx[i] as f64;
            let ey = ay * py[i] as f64 + by - gy[i] as f64;
            (ex * ex + ey * ey).sqrt()
        })
        .sum::<f64>()
        / px.len() as f64;
    Ok([epe, ax, bx, ay, by])
}

/// Mean end-point error without any fit.
pub fn epe(px: &[f32], gx: &[f32], py: &[f32], gy: &[f32]) -> Result<f64> {
    let n = px.len();
    if gx.len() != n || py.len() != n || gy.len() != n || n == 0 {
        return Err(Error::Shape(format!(
            "epe: flow components have {}, {}, {}, {} pixels; expected equal and non-zero",
            n,
            gx.len(),
            py.len(),
            gy.len()
        )));
    }
    let s: f64 = (0..n)
        .map(|i| {
            let (ex, ey) = (px[i] as f64 - gx[i] as f64, py[i] as f64 - gy[i] as f64);
            (ex * ex + ey * ey).sqrt()
        })
        .sum();
    Ok(s / n as f64)
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct DepthMetrics {
    pub abs_rel: f64,
    pub delta1: f64,
    pub alpha: f64,
    pub beta: f64,
    pub valid_pixels: usize,
}

/// AbsRel and delta1 after the least-squares fit on `valid` (pixels where gt is in range);
/// `range` clamps the fitted prediction (Hypersim: (1e-5, 65) metres).
pub fn depth_metrics(pred: &[f32], gt: &[f32], valid: &[bool], range: Option<(f64, f64)>) -> Result<DepthMetrics> {
    let (alpha, beta) = fit_affine(pred, gt, Some(valid))?;
    let (mut n, mut abs_rel, mut good) = (0usize, 0.0f64, 0usize);
    for i in (0..pred.len()).filter(|&i| valid[i]) {
        let mut d = alpha * pred[i] as f64 + beta;
        if let Some((lo, hi)) = range {
            d = d.clamp(lo, hi);
        }
        d = d.max(1e-6);
        let g = gt[i] as f64;
        if g <= 0.0 {
            return Err(Error::Input(format!("depth metrics: valid pixel {i} has ground truth {g} <= 0")));
        }
        n += 1;
        abs_rel += (d - g).abs() / g;
        if (d / g).max(g / d) < 1.25 {
            good += 1;
        }
    }
    Ok(DepthMetrics { abs_rel: abs_rel / n as f64, delta1: good as f64 / n as f64, alpha, beta, valid_pixels: n })
}

/// Intersection over union of two masks (1 when both are empty).
pub fn mask_iou(pred: &[bool], gt: &[bool]) -> Result<f64> {
    if pred.len() != gt.len() {
        return Err(Error::Shape(format!("iou: masks have {} and {} pixels", pred.len(), gt.len())));
    }
    let inter = pred.iter().zip(gt).filter(|(a, b)| **a && **b).count();
    let union = pred.iter().zip(gt).filter(|(a, b)| **a || **b).count();
    Ok(if union == 0 { 1.0 } else { inter as f64 / union as f64 })
}

/// Peak signal-to-noise ratio in dB for images with values up to `peak` (1 for [0, 1] images).
pub fn psnr(pred: &[f32], gt: &[f32], peak: f64) -> Result<f64> {
    if pred.len() != gt.len() || pred.is_empty() {
        return Err(Error::Shape(format!("psnr: images have {} and {} values", pred.len(), gt.len())));
    }
    let mse = pred.iter().zip(gt).map(|(a, b)| (*a as f64 - *b as f64).powi(2)).sum::<f64>() / pred.len() as f64;
    Ok(10.0 * (peak * peak / mse).log10())
}

/// Object mask of an amodal RGB output [3, h, w] in [0, 1]: pixels whose channel mean is below
/// 0.95, i.e. not the white background (CONVENTIONS.md).
pub fn amodal_mask(rgb: &[f32]) -> Vec<bool> {
    let n = rgb.len() / 3;
    (0..n).map(|p| (rgb[p] as f64 + rgb[n + p] as f64 + rgb[2 * n + p] as f64) / 3.0 < 0.95).collect()
}
