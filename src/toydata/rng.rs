//! A seeded random source and trigonometry that give the same bits on every machine.
//!
//! Every sample draws from its own stream, derived from (seed, dataset, index), so samples can be
//! generated in any order or in parallel and still come out identical. The maths below uses only
//! +, -, *, /, sqrt and floor, which IEEE 754 rounds exactly; platform `sin`/`cos` do not promise
//! that, so angles go through `sin_cos` here.

/// SplitMix64: tiny, fast, and good enough for scene parameters.
#[derive(Clone, Debug)]
pub struct Rng {
    state: u64,
}

fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng { state: mix(seed ^ 0x5EED_0F70_FDA7_A000) }
    }

    /// An independent stream for one sample of one dataset.
    pub fn derive(seed: u64, stream: &str, index: u64) -> Self {
        // FNV-1a over the stream name keeps the datasets' streams apart for the same index.
        let mut h: u64 = 0xCBF2_9CE4_8422_2325;
        for b in stream.bytes() {
            h = (h ^ b as u64).wrapping_mul(0x0000_0100_0000_01B3);
        }
        Rng::new(mix(seed).wrapping_add(mix(h ^ index.wrapping_mul(0x9E37_79B9_7F4A_7C15))))
    }

    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        mix(self.state)
    }

    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 / (1u64 << 24) as f32
    }

    /// Uniform in [lo, hi).
    pub fn range(&mut self, lo: f32, hi: f32) -> f32 {
        lo + (hi - lo) * self.unit()
    }

    /// Uniform integer in [0, n); `n` must be positive.
    pub fn below(&mut self, n: usize) -> usize {
        ((self.next_u64() >> 11) % n.max(1) as u64) as usize
    }

    /// Uniform integer in [lo, hi] inclusive.
    pub fn between(&mut self, lo: usize, hi: usize) -> usize {
        lo + self.below(hi - lo + 1)
    }

    pub fn chance(&mut self, p: f32) -> bool {
        self.unit() < p
    }

    /// -1 or 1.
    pub fn sign(&mut self) -> f32 {
        if self.chance(0.5) {
            1.0
        } else {
            -1.0
        }
    }
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
