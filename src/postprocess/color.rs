//! Colour maps for display: matplotlib's Spectral for depth and the authors' HSV scheme for
//! optical flow. Images are planar RGB [3, h, w] in [0, 1].

use super::metrics::epe_with_fit;
use crate::error::{Error, Result};

/// ColorBrewer's 11-class Spectral, the control points of matplotlib's "Spectral".
const SPECTRAL_POINTS: [[u8; 3]; 11] = [
    [158, 1, 66],
    [213, 62, 79],
    [244, 109, 67],
    [253, 174, 97],
    [254, 224, 139],
    [255, 255, 191],
    [230, 245, 152],
    [171, 221, 164],
    [102, 194, 165],
    [50, 136, 189],
    [94, 79, 162],
];

/// matplotlib's 256-entry Spectral table, built as its `LinearSegmentedColormap.from_list`
/// builds it: control points at linspace(0, 1, 11), each entry linearly interpolated at
/// i / 255 (in f64, then stored as f32).
pub fn spectral_lut() -> [[f32; 3]; 256] {
    const N: usize = 256;
    let m = SPECTRAL_POINTS.len();
    // numpy's linspace(0, 1, m) * (N - 1): i * (1 / (m - 1)), the last exactly 1
    let xs: Vec<f64> =
        (0..m).map(|i| if i == m - 1 { 1.0 } else { i as f64 * (1.0 / (m - 1) as f64) } * (N - 1) as f64).collect();
    let mut lut = [[0.0f32; 3]; N];
    for (c, channel) in (0..3).map(|c| (c, SPECTRAL_POINTS.map(|p| p[c] as f64 / 255.0))) {
        lut[0][c] = channel[0] as f32;
        lut[N - 1][c] = channel[m - 1] as f32;
        for (i, row) in lut.iter_mut().enumerate().take(N - 1).skip(1) {
            let xi = (N - 1) as f64 * (i as f64 * (1.0 / (N - 1) as f64));
            // searchsorted(xs, xi, side="left")
            let ind = xs.partition_point(|&x| x < xi);
            let distance = (xi - xs[ind - 1]) / (xs[ind] - xs[ind - 1]);
            let v = distance * (channel[ind] - channel[ind - 1]) + channel[ind - 1];
            row[c] = v.clamp(0.0, 1.0) as f32;
        }
    }
    lut
}

/// Spectral colours of values in [0, 1] (clipped): value v takes row min(floor(v * 256), 255),
/// as matplotlib's colormap call does. Returns [3, n] planar RGB.
pub fn colorize_depth(values: &[f32]) -> Vec<f32> {
    let lut = spectral_lut();
    let n = values.len();
    let mut out = vec![0.0f32; 3 * n];
    for (p, &v) in values.iter().enumerate() {
        let v = if v.is_nan() { 0.0 } else { v.clamp(0.0, 1.0) };
        let row = ((v as f64 * 256.0) as usize).min(255);
        for c in 0..3 {
            out[c * n + p] = lut[row][c];
        }
    }
    out
}

/// The authors' piecewise HSV -> RGB (h, s, v in [0, 1]).
fn hsv_to_rgb(h: f64, s: f64, v: f64) -> [f64; 3] {
    let h = h * 6.0;
    let c = v * s;
    let x = c * (1.0 - ((h.rem_euclid(2.0)) - 1.0).abs());
    let m = v - c;
    let r = if h < 1.0 {
        c
    } else if h < 2.0 {
        x
    } else if h < 4.0 {
        0.0
    } else if h < 5.0 {
        x
    } else {
        c
    };
    let g = if h < 1.0 {
        x
    } else if h < 3.0 {
        c
    } else if h < 4.0 {
        x
    } else {
        0.0
    };
    let b = if h < 2.0 {
        0.0
    } else if h < 3.0 {
        x
    } else if h < 5.0 {
        c
    } else {
        x
    };
    [r + m, g + m, b + m]
}

/// Flow colours [3, n]: hue from the direction ((atan2(v, u) + pi) / 2pi), saturation from the
/// magnitude relative to the largest (clipped to 1), value 0.9. Zero motion is light grey
/// (0.9, 0.9, 0.9); an all-zero field is all grey (the authors' code would divide 0 by 0).
pub fn flow_to_color(u: &[f32], v: &[f32]) -> Result<Vec<f32>> {
    if u.len() != v.len() {
        return Err(Error::Shape(format!("flow colours: u has {} pixels, v {}", u.len(), v.len())));
    }
    let uv: Vec<(f64, f64)> = u.iter().zip(v).map(|(&a, &b)| (a as f64, b as f64)).collect();
    Ok(flow_to_color_f64(&uv))
}

fn flow_to_color_f64(uv: &[(f64, f64)]) -> Vec<f32> {
    let n = uv.len();
    let max_mag = uv.iter().map(|(x, y)| (x * x + y * y).sqrt()).fold(0.0f64, f64::max);
    let mut out = vec![0.0f32; 3 * n];
    for (p, &(x, y)) in uv.iter().enumerate() {
        let mag = (x * x + y * y).sqrt();
        let sat = if max_mag > 0.0 { (mag / max_mag).clamp(0.0, 1.0) } else { 0.0 };
        let hue = (y.atan2(x) + std::f64::consts::PI) / (2.0 * std::f64::consts::PI);
        let rgb = hsv_to_rgb(hue, sat, 0.9);
        for c in 0..3 {
            out[c * n + p] = rgb[c] as f32;
        }
    }
    out
}

/// The authors' `create_colored_map`: the prediction is first fitted to the ground truth per
/// component (least squares), then both are coloured. Returns (prediction, ground truth), each
/// [3, n].
pub fn create_colored_map(px: &[f32], py: &[f32], gx: &[f32], gy: &[f32]) -> Result<(Vec<f32>, Vec<f32>)> {
    let [_, ax, bx, ay, by] = epe_with_fit(px, gx, py, gy)?;
    let pred: Vec<(f64, f64)> = px.iter().zip(py).map(|(&x, &y)| (ax * x as f64 + bx, ay * y as f64 + by)).collect();
    let gt: Vec<(f64, f64)> = gx.iter().zip(gy).map(|(&x, &y)| (x as f64, y as f64)).collect();
    Ok((flow_to_color_f64(&pred), flow_to_color_f64(&gt)))
}
