//! A seeded random source and trigonometry that give the same bits on every machine.
//!
//! Every sample draws from its own stream, derived from (seed, dataset, index), so samples can be
//! generated in any order or in parallel and still come out identical. The maths below uses only
//! +, -, *, /, sqrt and floor, which IEEE 754 rounds exactly; platform `sin`/`cos` do not promise
//! that, so angles go through `sin_cos` here.

pub use crate::util::rng::SplitMix64 as Rng;
use crate::util::{hash::fnv1a64, rng::mix64, rng::GOLDEN_GAMMA};

/// The independent stream of one sample of one dataset.
pub fn stream(seed: u64, dataset: &str, index: u64) -> Rng {
    // FNV-1a over the dataset's name keeps the datasets' streams apart for the same index.
    let start = mix64(seed).wrapping_add(mix64(fnv1a64(dataset.as_bytes()) ^ index.wrapping_mul(GOLDEN_GAMMA)));
    Rng(mix64(start ^ 0x5EED_0F70_FDA7_A000))
}

/// Sine and cosine from a Taylor series in f64 after reduction to [-pi, pi]: accurate to f32
/// precision and bit-identical everywhere.
pub fn sin_cos(x: f32) -> (f32, f32) {
    const TAU: f64 = std::f64::consts::TAU;
    let mut r = x as f64;
    r -= TAU * (r / TAU + 0.5).floor();
    // r in [-pi, pi); sum both series up to the 25th power (error < 1e-9 at pi).
    let r2 = r * r;
    let (mut s, mut c) = (0.0f64, 0.0f64);
    let (mut ts, mut tc) = (r, 1.0f64);
    for k in 0..13 {
        s += ts;
        c += tc;
        let n = (2 * k + 2) as f64;
        ts *= -r2 / (n * (n + 1.0));
        tc *= -r2 / ((n - 1.0) * n);
    }
    (s as f32, c as f32)
}
