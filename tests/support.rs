//! Shared test helpers: where the fixtures are, tolerances, random inputs.

use std::path::PathBuf;

/// `../shared/fixtures`, or `None` (with a printed reason) when absent. Under `CI=true` the
/// fixtures must be there: a green CI run has to have checked them.
pub fn fixtures_dir() -> Option<PathBuf> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/fixtures");
    if dir.join("README.md").exists() {
        return Some(dir);
    }
    if std::env::var("CI").map(|v| v == "true").unwrap_or(false) {
        panic!("CI=true but the fixtures are missing at {}", dir.display());
    }
    eprintln!("skipping: ../shared/fixtures not found at {}", dir.display());
    None
}

/// `../shared/seed_toy_data`, same rules as `fixtures_dir`.
#[allow(dead_code)]
pub fn seed_data_dir() -> Option<PathBuf> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/seed_toy_data");
    if dir.exists() {
        return Some(dir);
    }
    if std::env::var("CI").map(|v| v == "true").unwrap_or(false) {
        panic!("CI=true but the seed data is missing at {}", dir.display());
    }
    eprintln!("skipping: ../shared/seed_toy_data not found at {}", dir.display());
    None
}

/// A small deterministic RNG for test inputs (SplitMix64).
#[allow(dead_code)]
pub struct Rng(pub u64);

#[allow(dead_code)]
impl Rng {
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E3779B97F4A7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58476D1CE4E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D049BB133111EB);
        z ^ (z >> 31)
    }
    /// Uniform in [-1, 1).
    pub fn uniform(&mut self) -> f32 {
        ((self.next_u64() >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    }
    pub fn vec(&mut self, n: usize) -> Vec<f32> {
        (0..n).map(|_| self.uniform()).collect()
    }
}

pub use percept::tensor::rel_l2;
