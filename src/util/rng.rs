//! SplitMix64 (Steele, Lea and Flood 2014): the one seeded generator. The diffusion noise, the toy
//! data, the synthetic weights, the GPU probe's fragments and the tests' inputs all draw from it,
//! so a seed names the same numbers on every machine. Its bits are part of checked outputs (the
//! noise, `toy_data/`, the `fnv1a64-splitmix64-v1` weights): never change them.

/// The generator's increment, 2^64 / the golden ratio.
pub const GOLDEN_GAMMA: u64 = 0x9E37_79B9_7F4A_7C15;

/// SplitMix64's output function: a bijective mix of 64 bits.
#[inline]
pub const fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Output `i` (from 0) of the generator started at `state`, without running it: what
/// `SplitMix64(state)` returns from its `i + 1`-th `next_u64`. Random access for generating
/// large tensors in parallel.
#[inline]
pub const fn splitmix64_at(state: u64, i: u64) -> u64 {
    mix64(state.wrapping_add(i.wrapping_add(1).wrapping_mul(GOLDEN_GAMMA)))
}

/// The generator; its state is the plain counter (`SplitMix64(seed)` starts at `seed`).
#[derive(Clone, Debug)]
pub struct SplitMix64(pub u64);

impl SplitMix64 {
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(GOLDEN_GAMMA);
        mix64(self.0)
    }

    /// Uniform in [0, 1), 24 bits (exact in f32).
    pub fn unit(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 / (1u64 << 24) as f32
    }

    /// Uniform in (0, 1], 53 bits (never 0: safe under a logarithm).
    pub fn unit_f64_nonzero(&mut self) -> f64 {
        ((self.next_u64() >> 11) + 1) as f64 / (1u64 << 53) as f64
    }

    /// Uniform in [-1, 1), 24 bits.
    pub fn uniform(&mut self) -> f32 {
        self.unit() * 2.0 - 1.0
    }

    /// `n` values uniform in [-1, 1) (test and probe inputs).
    pub fn vec(&mut self, n: usize) -> Vec<f32> {
        (0..n).map(|_| self.uniform()).collect()
    }

    /// Uniform in [lo, hi).
    pub fn range(&mut self, lo: f32, hi: f32) -> f32 {
        lo + (hi - lo) * self.unit()
    }

    /// Uniform integer in [0, n) (0 when `n` is 0).
    pub fn below(&mut self, n: usize) -> usize {
        ((self.next_u64() >> 11) % n.max(1) as u64) as usize
    }

    /// Uniform integer in [lo, hi] inclusive.
    pub fn between(&mut self, lo: usize, hi: usize) -> usize {
        lo + self.below(hi - lo + 1)
    }

    /// True with probability `p`.
    pub fn chance(&mut self, p: f32) -> bool {
        self.unit() < p
    }

    /// -1 or 1, evenly.
    pub fn sign(&mut self) -> f32 {
        if self.chance(0.5) {
            1.0
        } else {
            -1.0
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_the_reference_splitmix64() {
        // The first outputs from state 1234567 of Vigna's splitmix64.c.
        let mut g = SplitMix64(1234567);
        let want = [6457827717110365317u64, 3203168211198807973, 9817491932198370423, 4593380528125082431];
        for (i, w) in want.into_iter().enumerate() {
            assert_eq!(g.next_u64(), w, "output {i}");
            assert_eq!(splitmix64_at(1234567, i as u64), w, "random access {i}");
        }
    }

    #[test]
    fn unit_ranges() {
        let mut g = SplitMix64(9);
        for _ in 0..10_000 {
            let (u, s, f) = (g.unit(), g.uniform(), g.unit_f64_nonzero());
            assert!((0.0..1.0).contains(&u) && (-1.0..1.0).contains(&s) && f > 0.0 && f <= 1.0);
        }
    }
}
