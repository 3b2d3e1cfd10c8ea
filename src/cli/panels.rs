//! Side-by-side panels for `percept eval`: input | prediction | ground truth, each at the ground
//! truth's size, coloured as the authors' visualisations are (SPEC.md "Post-processing and
//! evaluation").

use anyhow::{ensure, Result};

use crate::data::gestalt::GestaltData;
use crate::data::hypersim::DepthGt;
use crate::io::flo::Flow;
use crate::io::image::Image;
use crate::postprocess::color::{colorize_depth, create_colored_map};
use crate::postprocess::metrics::fit_affine;

/// Planar RGB panes of `w` x `h` placed left to right: [3, h, panes * w].
pub fn side_by_side(panes: &[&[f32]], w: usize, h: usize) -> Result<Vec<f32>> {
    let n = w * h;
    for (i, p) in panes.iter().enumerate() {
        ensure!(p.len() == 3 * n, "panel: pane {i} has {} values, expected 3 x {w} x {h}", p.len());
    }
    let total_w = w * panes.len();
    let mut out = vec![0.0f32; 3 * total_w * h];
    for (i, pane) in panes.iter().enumerate() {
        for c in 0..3 {
            for y in 0..h {
                let dst = c * total_w * h + y * total_w + i * w;
                out[dst..dst + w].copy_from_slice(&pane[c * n + y * w..c * n + (y + 1) * w]);
            }
        }
    }
    Ok(out)
}

/// Depth: the prediction fitted to the ground truth's metres (scale and shift on the valid
/// pixels), both shown in Spectral colours over the ground truth's valid range (near is red);
/// pixels without ground truth are black in its pane.
pub fn depth_panel(input: &Image, pred: &[f32], gt: &DepthGt) -> Result<Vec<f32>> {
    let (alpha, beta) = fit_affine(pred, &gt.depth, Some(&gt.valid))?;
    let valid_depths = gt.depth.iter().zip(&gt.valid).filter(|(_, v)| **v).map(|(d, _)| *d as f64);
    let (lo, hi) = valid_depths.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), d| (lo.min(d), hi.max(d)));
    let span = if hi > lo { hi - lo } else { 1.0 };
    let norm = |d: f64| ((d - lo) / span) as f32;
    let pred_pane = colorize_depth(&pred.iter().map(|&p| norm(alpha * p as f64 + beta)).collect::<Vec<_>>());
    let mut gt_pane = colorize_depth(&gt.depth.iter().map(|&d| norm(d as f64)).collect::<Vec<_>>());
    let n = gt.width * gt.height;
    for (p, _) in gt.valid.iter().enumerate().filter(|(_, v)| !**v) {
        for c in 0..3 {
            gt_pane[c * n + p] = 0.0;
        }
    }
    side_by_side(&[&input.data, &pred_pane, &gt_pane], gt.width, gt.height)
}

/// Flow: the authors' `create_colored_map` (prediction fitted per component, each field
/// coloured by its own largest motion).
pub fn flow_panel(input: &Image, pred: &Flow, gt: &Flow) -> Result<Vec<f32>> {
    let (pred_pane, gt_pane) = create_colored_map(&pred.u, &pred.v, &gt.u, &gt.v)?;
    side_by_side(&[&input.data, &pred_pane, &gt_pane], gt.width, gt.height)
}

/// Amodal segmentation: the occluded scene, the predicted whole object, the true whole object.
pub fn segment_panel(pred_image: &[f32], gt: &GestaltData) -> Result<Vec<f32>> {
    side_by_side(&[&gt.occlusion.data, pred_image, &gt.whole.data], gt.whole.width, gt.whole.height)
}
