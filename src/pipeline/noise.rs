//! Seeded Gaussian noise from our own generator (SplitMix64 + Box-Muller), identical on every
//! machine and backend, so a seed names one result.

use crate::util::rng::SplitMix64;

pub struct NoiseRng {
    uniform: SplitMix64,
    /// Box-Muller draws normals in pairs: the second of the last pair.
    spare: Option<f32>,
}

impl NoiseRng {
    pub fn new(seed: u64) -> Self {
        NoiseRng { uniform: SplitMix64(seed ^ 0x5EED_0F_9E2C_EB7_u64), spare: None }
    }
    pub fn normal(&mut self) -> f32 {
        if let Some(s) = self.spare.take() {
            return s;
        }
        let (u1, u2) = (self.uniform.unit_f64_nonzero(), self.uniform.unit_f64_nonzero());
        let r = (-2.0 * u1.ln()).sqrt();
        let th = 2.0 * std::f64::consts::PI * u2;
        self.spare = Some((r * th.sin()) as f32);
        (r * th.cos()) as f32
    }
    pub fn normals(&mut self, n: usize) -> Vec<f32> {
        (0..n).map(|_| self.normal()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeded_noise_is_standard_normal_and_repeatable() {
        let a = NoiseRng::new(7).normals(100_000);
        assert_eq!(a, NoiseRng::new(7).normals(100_000));
        assert_ne!(a[..10], NoiseRng::new(8).normals(10)[..]);
        let mean = a.iter().map(|&x| x as f64).sum::<f64>() / a.len() as f64;
        let var = a.iter().map(|&x| (x as f64 - mean).powi(2)).sum::<f64>() / a.len() as f64;
        assert!(mean.abs() < 0.01 && (var - 1.0).abs() < 0.02, "mean {mean} var {var}");
    }
}
